"""The closed-loop phases: wrk (2 threads, ``CONNECTIONS`` connections) against
``/healthz``, creates and the two reads, every phase ``BENCH_WRK_RUNS`` times in rounds,
the best run of each counting.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from functools import partial
from typing import Any

from .settings import CONNECTIONS, LUA, SECONDS, WRK_RUNS
from .steal import steal_of, stolen_share, with_little_steal


def parse_latency_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(
    url: str,
    env: dict[str, str],
    script: str | None = None,
    seconds: int = SECONDS,
    connections: int = CONNECTIONS,
) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(LUA / script)]
    # A run id of its own: create_invoice.lua's external ids must not repeat an earlier
    # run's (the warm-up's), or the "creates" would be updates that change nothing.
    run_env = {**os.environ, **env, "BENCH_RUN_ID": uuid.uuid4().hex[:8]}
    with stolen_share() as stolen:
        output = subprocess.run(
            command, env=run_env, capture_output=True, text=True, check=True
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": round(rps, 1),
        "p50_ms": parse_latency_ms(percentiles["50"]),
        "p99_ms": parse_latency_ms(percentiles["99"]),
        "errors": int(errors.group(1)) if errors else 0,
        **stolen,
    }


def closed_loop_phases(
    phases: dict[str, tuple[str, str | None]], env: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Run every closed-loop phase (name: url and wrk script) ``WRK_RUNS`` times, in
    rounds, each run with connections of its own; per phase, its best run and every run's
    req/s.

    The best of several: with ``serve --workers 2`` the worker processes share one
    listening socket, and the one that wakes first sometimes accepts all of wrk's
    connections, which halves that run (docs/performance.md); and this VM's speed moves
    by a fifth between two runs of one phase a minute apart, so a third run makes a ratio
    less the verdict of one slow minute. In rounds (every phase
    once, then again) rather than one phase's runs back to back: the machine's speed
    drifts over minutes, and two phases measured minutes apart would carry that drift
    into their ratio. Every phase, the ceiling included, is measured the same way."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in phases}
    for _ in range(WRK_RUNS):
        for name, (url, script) in phases.items():
            runs[name].append(with_little_steal(partial(wrk, url, env, script)))
    return {
        name: {
            **max(each, key=lambda run: run["rps"]),
            "runs_rps": [run["rps"] for run in each],
            **steal_of(each),
        }
        for name, each in runs.items()
    }
