"""What every phase of the bench shares: paths, the environment knobs, the targets, and
``log`` and ``free_port``.

Environment knobs: ``BENCH_SECONDS`` (per wrk run, default 10), ``BENCH_WRK_RUNS`` (runs
per closed-loop phase, the best counting; default 3), ``BENCH_HALF_RATE_RUNS`` (runs at
half the maximum create rate, the median counting; default 3), ``BENCH_LARGE``
(invoices for the scaling test, default 1000000), ``BENCH_RSS_INVOICES`` (invoices to
create through the API before reading the server's memory, default 100000),
``BENCH_MAX_STEAL_PCT`` (steal above which a run is measured again, default 5),
``BENCH_RECORD`` (``0``: a smoke run, whose figures go to the log folder only, not to
``bench/results/`` or ``docs/performance.md``; default 1), ``BENCH_WORKDIR`` (where the
log folder is made, default ``/tmp``), ``PARTNERPAY_TEST_POSTGRES_URL`` (the PostgreSQL
server whose throwaway databases the bench uses).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).parent.parent
ROOT = BENCH.parent
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
POSTGRES_ADMIN_URL = os.environ.get(
    "PARTNERPAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
LARGE = int(os.environ.get("BENCH_LARGE", "1000000"))
SMALL = 10_000
RSS_INVOICES = int(os.environ.get("BENCH_RSS_INVOICES", "100000"))
CONNECTIONS = 32
WRK_RUNS = int(os.environ.get("BENCH_WRK_RUNS", "3"))
HALF_RATE_RUNS = int(os.environ.get("BENCH_HALF_RATE_RUNS", "3"))
# A run during which the hypervisor gave more than this share of the machine's CPU to
# other guests is measured again, up to STEAL_RETRIES times, after STEAL_PAUSE_S.
MAX_STEAL_PCT = float(os.environ.get("BENCH_MAX_STEAL_PCT", "5"))
RECORD = os.environ.get("BENCH_RECORD", "1") != "0"
CLOSED_LOOP_PHASES = ("healthz", "create", "get_by_id", "get_by_external_id")
API = "/api/v3/partner"

TARGETS = {
    "create_ratio": (">=", 0.30),
    "get_by_id_ratio": (">=", 0.50),
    "get_by_external_id_ratio": (">=", 0.50),
    "create_p99_ms_at_half_rate": ("<=", 25.0),
    "webhook_p99_ms_at_half_rate": ("<=", 250.0),
    "webhook_backlog_grows": ("==", False),
    "get_by_external_id_latency_ratio_large_vs_small": ("<=", 1.2),
    "rss_mb_after_rss_invoices": ("<=", 200.0),
}


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
