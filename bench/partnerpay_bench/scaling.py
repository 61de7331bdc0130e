"""The scaling figure: GET by external id at ``SMALL`` stored invoices and at
``BENCH_LARGE``, on two databases served side by side, measured in turns; the figure is
the ratio of the two points' best p50.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from .closed_loop import wrk
from .databases import seed_invoices
from .deployment import Deployment, deployment
from .settings import API, LARGE, SECONDS, SMALL
from .steal import steal_of, with_little_steal

SCALING_RUNS = 3


def scaling(small: Deployment, name: str, large_url: str, workdir: Path) -> dict[str, Any]:
    """GET by external id at ``SMALL`` stored invoices and at ``LARGE``, on two databases
    served side by side the same way, measured in turns: a run at the small point, then one
    at the large, ``SCALING_RUNS`` times; each point is its best run (lowest p50), as the
    closed-loop phases take their best run.

    In turns, because this VM's speed drifts over minutes: measured one after the other
    (the small point, the seeding, then the large point), the two points were a minute or
    more apart, and the ratio read the drift as much as the index's size (SQLite 1.243 in
    one full run and 0.999 in the one before, with no change to the lookup; a direct check
    then found the million a little faster). On a fast machine the earlier phases create
    more than ``SMALL`` through the API; the small point is then what they left, which the
    result records."""
    seeded, stored = seed_invoices(small.database, small.firm_id, small.partner_id, SMALL)
    with deployment(name, large_url, workdir, f"{name}-large") as large:
        started = time.monotonic()
        seeded_large, stored_large = seed_invoices(
            large.database, large.firm_id, large.partner_id, LARGE
        )
        seeded_s = round(time.monotonic() - started, 1)
        points = {
            "small": (_seeded_invoice_url(small, seeded), small.wrk_env),
            "large": (_seeded_invoice_url(large, seeded_large), large.wrk_env),
        }
        runs: dict[str, list[dict[str, Any]]] = {point: [] for point in points}
        for url, wrk_env in points.values():  # warm each server's caches and indexes
            wrk(url, wrk_env, "authed_get.lua", seconds=3, connections=8)
        for _ in range(SCALING_RUNS):
            for point, (url, wrk_env) in points.items():
                runs[point].append(with_little_steal(partial(latency_run, url, wrk_env)))
    at_small, at_large = best_latency_run(runs["small"]), best_latency_run(runs["large"])
    return {
        "scaling": {
            "small": stored,
            "large": stored_large,
            "seed_seconds": seeded_s,
            "at_small": at_small,
            "at_large": at_large,
        },
        "get_by_external_id_latency_ratio_large_vs_small": round(
            at_large["p50_ms"] / at_small["p50_ms"], 3
        ),
    }


def _seeded_invoice_url(app: Deployment, seeded: int) -> str:
    """The middle one of the invoices seeded in ``app``'s database."""
    return f"{app.base_url}{API}/invoices/firm/{app.firm_id}/seed-{(seeded + 1) // 2}"


def latency_run(url: str, wrk_env: dict[str, str]) -> dict[str, Any]:
    run = wrk(url, wrk_env, "authed_get.lua", seconds=max(SECONDS // 2, 1), connections=8)
    if run["errors"]:
        raise RuntimeError(f"{url} did not answer 200 to every request: {run}")
    return run


def best_latency_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the lowest p50, with every run's p50."""
    best = min(runs, key=lambda run: run["p50_ms"])
    return {
        **best,
        "runs_p50_ms": [run["p50_ms"] for run in runs],
        **steal_of(runs),
    }
