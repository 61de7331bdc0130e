"""The two light clients the half-rate phase times with: a load generator that posts
creates at a fixed rate whatever the answers' pace (open loop) and samples the webhook
backlog, and a webhook receiver in a process of its own that stamps each arrival.

Both run on uvloop over raw connections, with this process's garbage collector paused
(:func:`collector_paused`), so that neither takes the server's CPU nor stalls while timing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvloop

from .settings import API, ROOT

# The open-loop run starts with this many seconds it does not count: the server may still
# be finishing the requests wrk left in flight, and the first connections are opened.
WARMUP_S = 1.0
ARRIVAL_BATCH_S = 0.2


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while timing: a full collection here walked
    about 135,000 objects (this script imports the whole server) in 50 to 80 ms, long enough
    for 20 requests to fall due and be sent late."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def read_http_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 message with a Content-Length body: (its first line, its body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    first_line, _, header_lines = head.partition(b"\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", header_lines)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return first_line, body


def receive_webhooks(port: int, arrivals: Any, ready: Any) -> None:
    """A webhook receiver in a process of its own: stamps each arrival, answers 200, and
    hands the stamps over in batches. It shares the machine with the server, so it is
    kept light: uvloop, and one queue put per batch rather than per webhook took it from
    about 4.5 % to 3 % of a core at 285 webhooks a second."""
    stamped: list[tuple[str, float]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _, body = await read_http_message(reader)
                stamped.append((json.loads(body)["event"]["external_id"], time.time()))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def hand_over() -> None:
        while True:
            await asyncio.sleep(ARRIVAL_BATCH_S)
            if stamped:
                arrivals.put(stamped.copy())
                stamped.clear()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
        ready.set()
        await asyncio.gather(server.serve_forever(), hand_over())

    with collector_paused():
        uvloop.run(serve())


def invoice_body(firm_id: str, external_id: str) -> dict[str, Any]:
    guide = json.loads((ROOT / "bench" / "guide_invoice.json").read_text())
    return {**guide, "firm_id": firm_id, "external_id": external_id}


def fixed_rate_creates(
    base_url: str, headers: dict[str, str], firm_id: str, rate: float, seconds: int
) -> dict[str, Any]:
    """POST at a fixed rate, whatever the answers' pace (open loop), over raw keep-alive
    connections from one event loop (a light client, so that the load tool does not take
    the server's CPU), and read the webhook backlog from ``/metrics`` every second the
    same way. Latency runs from when a request was due, not when it could be sent; the first
    ``WARMUP_S`` are not counted.

    Nothing else may run in this process meanwhile: a stall here (an httpx client's
    start-up takes tens of milliseconds, and so does a full garbage collection of this
    process's heap) would send the requests due during it in one burst, and the server's
    queueing of that burst would read as its own latency."""
    with collector_paused():
        return uvloop.run(_fixed_rate_creates(base_url, headers, firm_id, rate, seconds))


async def _fixed_rate_creates(
    base_url: str, headers: dict[str, str], firm_id: str, rate: float, seconds: int
) -> dict[str, Any]:
    url = httpx.URL(base_url)
    interval, total = 1.0 / rate, int(rate * seconds)
    template = json.dumps(invoice_body(firm_id, "{external_id}"))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    returned: dict[str, float] = {}
    backlog: list[tuple[float, float]] = []

    def request(external_id: str) -> bytes:
        body = template.replace("{external_id}", external_id).encode()
        return (
            f"POST {API}/invoices HTTP/1.1\r\nhost: {url.host}\r\n{head}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body

    metrics_request = f"GET /metrics HTTP/1.1\r\nhost: {url.host}\r\n\r\n".encode()

    async def exchange(message: bytes) -> tuple[bytes, bytes]:
        """Send on an idle connection, or a new one if there is none or the server has
        closed the idle one (uvicorn closes keep-alive connections idle for 5 s)."""
        while True:
            reused = bool(idle)
            connection = idle.pop() if reused else await asyncio.open_connection(url.host, url.port)
            reader, writer = connection
            try:
                writer.write(message)
                answer = await read_http_message(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                if reused:
                    continue
                raise
            idle.append(connection)
            return answer

    async def post(external_id: str, due: float, measured: bool) -> None:
        status_line, _ = await exchange(request(external_id))
        if not measured:
            return
        latencies.append((time.perf_counter() - due) * 1000)
        if status_line.split()[1] == b"200":
            returned[external_id] = time.time()

    async def sample_backlog(start: float) -> None:
        while True:
            _, metrics = await exchange(metrics_request)
            depth = backlog_depth(metrics.decode())
            backlog.append((time.perf_counter() - start, depth))
            await asyncio.sleep(1.0)

    warmup = int(rate * WARMUP_S)
    start = measured_from = time.perf_counter()
    sampler: asyncio.Task[None] | None = None
    posts = []
    for n in range(warmup + total):
        due = start + n * interval
        await asyncio.sleep(max(due - time.perf_counter(), 0))
        if n == warmup:
            measured_from = time.perf_counter()
            sampler = asyncio.create_task(sample_backlog(measured_from))
        posts.append(asyncio.create_task(post(f"rate-{uuid.uuid4().hex}", due, n >= warmup)))
    await asyncio.gather(*posts)
    elapsed = time.perf_counter() - measured_from
    if sampler:
        sampler.cancel()
    for _, writer in idle:
        writer.close()
    latencies.sort()
    return {
        "latencies": latencies,
        "returned": returned,
        "backlog": backlog,
        "achieved_rps": round(total / elapsed, 1),
    }


def backlog_depth(metrics: str) -> float:
    match = re.search(
        r'^partnerpay_webhook_backlog\{state="due"\} ([\d.e+]+)$', metrics, re.MULTILINE
    )
    return float(match.group(1)) if match else 0.0


def backlog_slope(samples: list[tuple[float, float]]) -> float:
    """Deliveries per second the due backlog grew by over the run (least squares), so that
    one busy second does not read as growth."""
    if len(samples) < 2:
        return 0.0
    times, depths = [t for t, _ in samples], [d for _, d in samples]
    mean_t, mean_d = sum(times) / len(times), sum(depths) / len(depths)
    spread = sum((t - mean_t) ** 2 for t in times)
    return sum((t - mean_t) * (d - mean_d) for t, d in samples) / spread if spread else 0.0


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(share * (len(sorted_values) - 1)))
    return round(sorted_values[index], 2)
