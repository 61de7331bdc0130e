"""The memory figure: the server's resident memory (``VmRSS``, and its peak ``VmHWM``) of
each of its processes, once ``BENCH_RSS_INVOICES`` invoices have been created through the
API with wrk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import text

from partnerpay.db import Database

from .closed_loop import wrk
from .settings import RSS_INVOICES


def process_tree_rss_kb(pid: int, field: str) -> list[int]:
    """``VmRSS`` or ``VmHWM`` (peak) of a process and its children, in kB."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    sizes = []
    for one in pids:
        status = Path(f"/proc/{one}/status")
        if status.exists():
            match = re.search(rf"^{field}:\s+(\d+) kB", status.read_text(), re.MULTILINE)
            sizes.append(int(match.group(1)) if match else 0)
    return sizes


def memory(
    pid: int, database: Database, invoices_url: str, wrk_env: dict[str, str], create_rps: float
) -> dict[str, Any]:
    with database.session(read_only=True) as session:
        before = session.execute(
            text("SELECT count(*) FROM invoices WHERE external_id LIKE 'bench-%'")
        ).scalar_one()
    remaining = max(RSS_INVOICES - before, 0)
    while remaining > 0:
        wrk(
            invoices_url,
            wrk_env,
            "create_invoice.lua",
            seconds=max(5, min(120, int(remaining / max(create_rps, 1)) + 1)),
        )
        with database.session(read_only=True) as session:
            done = session.execute(
                text("SELECT count(*) FROM invoices WHERE external_id LIKE 'bench-%'")
            ).scalar_one()
        remaining = RSS_INVOICES - done
    rss = process_tree_rss_kb(pid, "VmRSS")
    peak = process_tree_rss_kb(pid, "VmHWM")
    return {
        "memory": {
            "invoices_created_through_api": RSS_INVOICES - min(remaining, 0)
            if remaining < 0
            else RSS_INVOICES,
            "rss_mb_per_process": [round(kb / 1024, 1) for kb in rss],
            "peak_rss_mb_per_process": [round(kb / 1024, 1) for kb in peak],
        },
        "rss_mb_after_rss_invoices": round(max(rss) / 1024, 1),
    }
