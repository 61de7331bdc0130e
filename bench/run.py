"""``make bench``: partnerpay under load, started as a user would, measured from outside.

For each database (SQLite; PostgreSQL too when it is reachable) this starts the server
(SQLite: ``partnerpay serve``; PostgreSQL: ``serve --workers 2`` and one
``partnerpay worker``), drives it with ``wrk`` and with an open-loop load generator, and
reports every figure as a ratio or against its target. Results go to
``bench/results/<database>.json`` (the latest run on each database, overwriting the one
before) and to ``docs/performance.md`` as a table; with ``BENCH_RECORD=0`` (a smoke run)
they go to the run's log folder only, and the record is left as it was.

This file holds the order of the phases; each phase is a module of
``bench/partnerpay_bench/``. Environment knobs: see ``partnerpay_bench/settings.py``
(``BENCH_SECONDS``, ``BENCH_WRK_RUNS``, ``BENCH_HALF_RATE_RUNS``, ``BENCH_LARGE``,
``BENCH_RSS_INVOICES``, ``BENCH_MAX_STEAL_PCT``, ``BENCH_RECORD``, ``BENCH_WORKDIR``).
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from partnerpay_bench.closed_loop import closed_loop_phases, wrk
from partnerpay_bench.databases import (
    NewDatabase,
    postgres_database,
    postgres_reachable,
    sqlite_database,
)
from partnerpay_bench.deployment import SETUPS, deployment
from partnerpay_bench.half_rate import half_rate
from partnerpay_bench.memory import memory
from partnerpay_bench.report import (
    machine,
    markdown,
    update_performance_doc,
    verdicts,
    write_results,
)
from partnerpay_bench.scaling import scaling
from partnerpay_bench.settings import API, LARGE, RECORD, RESULTS, RSS_INVOICES, SMALL, log


def bench_backend(name: str, new_database: NewDatabase, workdir: Path) -> dict[str, Any]:
    """Every figure for one kind of database; ``new_database`` makes one (and the scaling
    figure a second, for its million invoices)."""
    result: dict[str, Any] = {"database": name, "setup": SETUPS[name]}
    with new_database() as database_url, deployment(name, database_url, workdir, name) as app:
        invoices = f"{app.base_url}{API}/invoices"

        log(f"{name}: warming up")
        wrk(f"{app.base_url}/healthz", app.wrk_env, seconds=3)
        wrk(invoices, app.wrk_env, "create_invoice.lua", seconds=3)

        sample = httpx.get(f"{invoices}?limit=1", headers=app.headers).json()["invoices"][0]
        by_id = f"{invoices}/{sample['invoice_id']}"
        by_external = f"{invoices}/firm/{app.firm_id}/{sample['external_id']}"
        log(f"{name}: GET /healthz, POST /invoices, GET by id and by external id, in rounds")
        phases = {
            "healthz": (f"{app.base_url}/healthz", None),
            "create": (invoices, "create_invoice.lua"),
            "get_by_id": (by_id, "authed_get.lua"),
            "get_by_external_id": (by_external, "authed_get.lua"),
        }
        result.update(closed_loop_phases(phases, app.wrk_env))
        ceiling = result["healthz"]["rps"]
        for key in ("create", "get_by_id", "get_by_external_id"):
            result[f"{key}_ratio"] = round(result[key]["rps"] / ceiling, 3)

        log(f"{name}: creates at half the maximum rate, with a webhook receiver")
        result.update(half_rate(app.base_url, app.headers, str(app.firm_id), app.wrk_env))

        log(f"{name}: GET by external id with {SMALL} and {LARGE} stored invoices")
        with new_database() as large_url:
            result.update(scaling(app, name, large_url, workdir))

        log(f"{name}: creating {RSS_INVOICES} invoices through the API, then reading RSS")
        result.update(
            memory(app.server.pid, app.database, invoices, app.wrk_env, result["create"]["rps"])
        )
    return result


def main() -> int:
    workdir = (
        Path(os.environ.get("BENCH_WORKDIR", "/tmp")) / f"partnerpay-bench-{uuid.uuid4().hex[:6]}"
    )
    workdir.mkdir(parents=True)
    report: dict[str, Any] = {"machine": machine(), "runs": {}}
    backends: list[tuple[str, NewDatabase]] = [
        ("sqlite", lambda: sqlite_database(workdir, f"bench-{uuid.uuid4().hex[:6]}"))
    ]
    if postgres_reachable():
        backends.append(("postgresql", postgres_database))
    else:
        log("PostgreSQL is not reachable: benchmarking SQLite only")
    for name, new_database in backends:
        report["runs"][name] = bench_backend(name, new_database, workdir)
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    for result in report["runs"].values():
        result["verdicts"] = [
            {"figure": k, "value": v, "target": t, "met": m} for k, v, t, m in verdicts(result)
        ]
    table = markdown(report)
    if RECORD:
        RESULTS.mkdir(exist_ok=True)
        written = write_results(report, RESULTS)
        update_performance_doc(table)
    else:
        written = write_results(report, workdir)
        log("BENCH_RECORD=0: bench/results/ and docs/performance.md left as they were")
    print(table)
    log(f"logs in {workdir}; results in {', '.join(str(path) for path in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
