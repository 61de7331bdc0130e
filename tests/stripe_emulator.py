"""localstripe, the stateful Stripe emulator, as a real server on a loopback port.

``python -m tests.stripe_emulator PORT`` serves localstripe's own aiohttp application on
127.0.0.1 with its state in memory (its console script listens on every interface and
keeps state in a file shared by every run on the machine). The suite starts one per
session (:class:`StripeEmulator`) and points the Stripe adapter, the payment page's
Stripe.js and the registered webhooks at it; ``docs/payments.md`` says what it does not
emulate.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import STARTUP_DEADLINE_S, free_port, wait_until

SECRET_KEY = "sk_test_partnerpay"
PUBLISHABLE_KEY = "pk_test_partnerpay"
WEBHOOK_SECRET = "whsec_partnerpay_test"


@dataclass
class StripeEmulator:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    @contextmanager
    def start(cls, log: Path) -> Iterator[StripeEmulator]:
        port = free_port()
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.stripe_emulator", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        emulator = cls(f"http://127.0.0.1:{port}", process, log)
        try:
            wait_until(emulator.is_up, STARTUP_DEADLINE_S, f"localstripe ({log})")
            yield emulator
        finally:
            process.terminate()
            process.wait(timeout=15)

    def is_up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"localstripe exited: {self.log.read_text()}")
        try:
            return httpx.get(f"{self.base_url}/js.stripe.com/v3/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def js_url(self) -> str:
        return f"{self.base_url}/js.stripe.com/v3/"

    def gateway_env(self) -> dict[str, str]:
        """The settings of a partnerpay taking payments through this emulator."""
        return {
            "PARTNERPAY_GATEWAY": "stripe",
            "PARTNERPAY_STRIPE_SECRET_KEY": SECRET_KEY,
            "PARTNERPAY_STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "PARTNERPAY_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PARTNERPAY_STRIPE_API_BASE": self.base_url,
            "PARTNERPAY_STRIPE_JS_URL": self.js_url,
        }

    def register_webhook(self, name: str, url: str, secret: str = WEBHOOK_SECRET) -> None:
        """Have the emulator send its events to ``url`` (the same name again replaces it)."""
        response = httpx.post(
            f"{self.base_url}/_config/webhooks/{name}", data={"url": url, "secret": secret}
        )
        response.raise_for_status()


def serve(port: int) -> None:
    from aiohttp import web
    from localstripe import server
    from localstripe.resources import store

    store.dump_to_disk = lambda: None  # type: ignore[method-assign]  (state stays in memory)
    web.run_app(server.app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
