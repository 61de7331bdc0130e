"""What a run reports: each figure against its target, the machine it ran on, the markdown
table that replaces the one in ``docs/performance.md``, and the result files, one per
database (``bench/results/<database>.json``, overwritten by the next run on it).
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from .settings import CLOSED_LOOP_PHASES, MAX_STEAL_PCT, PERFORMANCE_DOC, TARGETS
from .steal import discarded_runs


def verdicts(result: dict[str, Any]) -> list[tuple[str, Any, str, bool]]:
    rows = []
    for key, (op, target) in TARGETS.items():
        value = result.get(key)
        met = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, "==": lambda v, t: v == t}[op](
            value, target
        )
        rows.append((key, value, f"{op} {target}", bool(met)))
    return rows


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def each_run(values: list[Any], steal_pcts: list[float]) -> str:
    """Every run's figure with the share of CPU stolen from the VM during it."""
    return ", ".join(
        f"{value} ({steal} %)" for value, steal in zip(values, steal_pcts, strict=True)
    )


def steal_retries(result: dict[str, Any]) -> str:
    discarded = discarded_runs(result)
    if not discarded:
        return f"No run was measured again: none lost more than {MAX_STEAL_PCT} % to steal."
    runs = "1 run was" if len(discarded) == 1 else f"{len(discarded)} runs were"
    return (
        f"{runs} measured again, having lost more than {MAX_STEAL_PCT} % of the CPU to "
        f"steal ({', '.join(f'{steal} %' for steal in discarded)})."
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Run {report['finished_at']} on {report['machine']['cores']} cores "
        f"({report['machine']['cpu']}), {report['machine']['memory_gb']} GB, "
        f"Python {report['machine']['python']}. In parentheses after each run's figure: the "
        "share of the machine's CPU time the hypervisor gave to other guests during that run "
        "(steal).",
        "",
    ]
    for name, result in report["runs"].items():
        lines += [
            f"### {name}: {result['setup']}",
            "",
            "| phase | req/s (best run) | p50 ms | p99 ms | every run's req/s (steal) |",
            "|---|---|---|---|---|",
        ]
        for phase in CLOSED_LOOP_PHASES:
            r = result[phase]
            runs = each_run(r["runs_rps"], r["runs_steal_pct"])
            lines.append(f"| {phase} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {runs} |")
        half, scale = result["half_rate"], result["scaling"]
        half_runs = half["runs"]
        maxima = each_run(
            [run["max_rps"] for run in half_runs], [run["max_run_steal_pct"] for run in half_runs]
        )
        p99s = each_run(
            [run["create_p99_ms"] for run in half_runs],
            [run["half_rate_steal_pct"] for run in half_runs],
        )
        drained = ", ".join(
            "never" if run["backlog_drained_s"] is None else f"{run['backlog_drained_s']} s"
            for run in half_runs
        )
        small, large = scale["at_small"], scale["at_large"]
        lines += [
            "",
            f"Half rate, median of {len(half_runs)} runs, each at half of a create run of its "
            f"own just before it, with the webhook subscribed ({maxima} creates/s; the "
            f"closed-loop phase's, without it: {result['create']['rps']}; the deliveries each "
            f"left were sent in {drained}): {half['achieved_rps']} creates/s; "
            f"create p50 {half['create_p50_ms']} ms; each run's create p99 {p99s} ms; "
            f"webhook p50 {half['webhook_p50_ms']} ms; {half['webhooks_received']} of "
            f"{half['webhooks_expected']} webhooks received. GET by external id at "
            f"{scale['small']} and {scale['large']} stored invoices, p50 of each run: "
            f"{each_run(small['runs_p50_ms'], small['runs_steal_pct'])} ms and "
            f"{each_run(large['runs_p50_ms'], large['runs_steal_pct'])} ms.",
            "",
            steal_retries(result),
            "",
            "| figure | value | target | met |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {v} | {t} | {'yes' if m else '**no**'} |" for k, v, t, m in verdicts(result)
        ]
        lines.append("")
    return "\n".join(lines)


def update_performance_doc(table: str) -> None:
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    doc = (
        PERFORMANCE_DOC.read_text()
        if PERFORMANCE_DOC.exists()
        else f"# Performance\n\n{begin}\n{end}\n"
    )
    before, _, rest = doc.partition(begin)
    _, _, after = rest.partition(end)
    PERFORMANCE_DOC.write_text(f"{before}{begin}\n{table}\n{end}{after}")


def write_results(report: dict[str, Any], folder: Path) -> list[Path]:
    """One file per database in ``folder``, ``<database>.json``, in the report's own shape
    (the machine, that database's run, when the run finished), replacing the one before;
    the files written."""
    written = []
    for name, result in report["runs"].items():
        path = folder / f"{name}.json"
        one = {"machine": report["machine"], "runs": {name: result}}
        one["finished_at"] = report["finished_at"]
        path.write_text(json.dumps(one, indent=2) + "\n")
        written.append(path)
    return written
