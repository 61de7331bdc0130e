"""Creates at half the maximum create rate with a webhook subscribed: the create latency
and the webhooks' end-to-end latency at that rate, and whether the webhook backlog grows.
Each run pairs a wrk create run (the maximum) with an open-loop run at half of it.
"""

from __future__ import annotations

import multiprocessing
import queue
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx

from .closed_loop import wrk
from .open_loop import (
    backlog_depth,
    backlog_slope,
    fixed_rate_creates,
    percentile,
    receive_webhooks,
)
from .settings import API, HALF_RATE_RUNS, SECONDS, free_port
from .steal import steal_of, stolen_share, with_little_steal

BACKLOG_GROWTH_PER_S = 1.0
DRAIN_DEADLINE_S = 120.0
DRAIN_POLL_S = 0.2


def half_rate(
    base_url: str, headers: dict[str, str], firm_id: str, wrk_env: dict[str, str]
) -> dict[str, Any]:
    """Creates at half the maximum create rate with a webhook receiver, in
    ``HALF_RATE_RUNS`` runs; each figure is the median of the runs' own, and the backlog
    counts as growing if it grew in any.

    Each run measures the maximum first (a wrk create run with the webhook subscribed), then
    posts at half of it (:func:`half_rate_pair`). Half of the closed-loop phase's best run
    would be half of the machine's fastest minutes: this VM's speed changes by up to two
    times within seconds (docs/performance.md), so a fixed rate was half of its capacity in
    one minute and all of it in another.

    Several runs, not one: a run's p99 rests on its slowest twenty requests, so a single
    slow second of the machine decided it. The median of three needs two runs to meet a
    target."""
    arrivals: Any = multiprocessing.Queue()
    ready = multiprocessing.Event()
    port = free_port()
    receiver = multiprocessing.Process(
        target=receive_webhooks, args=(port, arrivals, ready), daemon=True
    )
    receiver.start()
    ready.wait(10)
    hook = {"name": "bench", "url": f"http://127.0.0.1:{port}/hook", "events": ["invoice.created"]}
    runs = []
    try:
        for _ in range(HALF_RATE_RUNS):
            measure = partial(half_rate_pair, base_url, headers, firm_id, wrk_env, hook, arrivals)
            runs.append(with_little_steal(measure))
    finally:
        receiver.terminate()

    def median(key: str) -> float:
        return round(float(statistics.median(run[key] for run in runs)), 2)

    grows = any(
        run["backlog_slope_per_s"] > BACKLOG_GROWTH_PER_S
        or run["webhooks_received"] < run["webhooks_expected"]
        or run["backlog_drained_s"] is None
        for run in runs
    )
    figures = (
        "target_rps",
        "achieved_rps",
        "create_p50_ms",
        "create_p99_ms",
        "webhook_p50_ms",
        "webhook_p99_ms",
    )
    medians = {key: median(key) for key in figures}
    return {
        "half_rate": {
            **medians,
            "webhooks_expected": sum(run["webhooks_expected"] for run in runs),
            "webhooks_received": sum(run["webhooks_received"] for run in runs),
            "runs": runs,
            **steal_of(runs),
        },
        "create_p99_ms_at_half_rate": medians["create_p99_ms"],
        "webhook_p99_ms_at_half_rate": medians["webhook_p99_ms"],
        "webhook_backlog_grows": grows,
    }


def half_rate_pair(
    base_url: str,
    headers: dict[str, str],
    firm_id: str,
    wrk_env: dict[str, str],
    hook: dict[str, Any],
    arrivals: Any,
) -> dict[str, Any]:
    """A wrk create run and, once the deliveries it left are sent, creates at half its rate,
    both with ``hook`` subscribed; the steal of the pair is the larger of its two runs'.

    The maximum is taken with the webhook subscribed because the half-rate run has it: each
    create there brings a delivery, which the worker and PostgreSQL pay for on the same two
    cores. Half of a maximum taken without that work (the closed-loop phase's) loaded this
    machine 74 to 92 % at "half" rate (docs/performance.md, "Half rate")."""
    with webhook_subscribed(base_url, headers, hook):
        closed = wrk(f"{base_url}{API}/invoices", wrk_env, "create_invoice.lua")
        drained_s = backlog_drained(base_url)
        run = half_rate_run(base_url, headers, firm_id, closed["rps"] / 2, arrivals)
    return {
        **run,
        "max_rps": closed["rps"],
        "max_run_steal_pct": closed["steal_pct"],
        "backlog_drained_s": drained_s,
        "half_rate_steal_pct": run["steal_pct"],
        "steal_pct": max(closed["steal_pct"], run["steal_pct"]),
        "target_rps": round(closed["rps"] / 2, 1),
    }


def backlog_drained(base_url: str) -> float | None:
    """Seconds until no delivery is due (the wrk run may leave some: the worker sends while
    it runs, on the same two cores), or ``None`` if some still were after
    ``DRAIN_DEADLINE_S``."""
    start = time.monotonic()
    while time.monotonic() - start < DRAIN_DEADLINE_S:
        if backlog_depth(httpx.get(f"{base_url}/metrics").text) == 0:
            return round(time.monotonic() - start, 1)
        time.sleep(DRAIN_POLL_S)
    return None


@contextmanager
def webhook_subscribed(
    base_url: str, headers: dict[str, str], hook: dict[str, Any]
) -> Iterator[None]:
    created = httpx.post(f"{base_url}{API}/webhooks", json=hook, headers=headers)
    webhook_id = created.json()["webhook"]["webhook_id"]
    try:
        yield
    finally:
        httpx.delete(f"{base_url}{API}/webhooks/{webhook_id}", headers=headers)


def half_rate_run(
    base_url: str, headers: dict[str, str], firm_id: str, rate: float, arrivals: Any
) -> dict[str, Any]:
    """One run of creates at ``rate``, and the webhooks of the creates it timed."""
    with stolen_share() as stolen:
        load = fixed_rate_creates(base_url, headers, firm_id, rate, SECONDS)
    returned = load["returned"]
    received: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while len(received) < len(returned) and time.monotonic() < deadline:
        try:
            batch = arrivals.get(timeout=1)
        except queue.Empty:
            continue
        for external_id, arrived in batch:
            if external_id in returned:
                received.setdefault(external_id, arrived)
    delays = sorted((received[k] - returned[k]) * 1000 for k in returned if k in received)
    return {
        "achieved_rps": load["achieved_rps"],
        "create_p50_ms": percentile(load["latencies"], 0.5),
        "create_p99_ms": percentile(load["latencies"], 0.99),
        "webhook_p50_ms": percentile(delays, 0.5),
        "webhook_p99_ms": percentile(delays, 0.99),
        "webhooks_expected": len(returned),
        "webhooks_received": len(delays),
        "backlog_samples": [depth for _, depth in load["backlog"]],
        "backlog_slope_per_s": round(backlog_slope(load["backlog"]), 2),
        **stolen,
    }
