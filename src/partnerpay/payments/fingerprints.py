"""Fingerprints of payment requests: how a retry is told from another request that was
sent with the same idempotency key.

A fingerprint is a SHA-256 of the request's canonical form (``canonical()`` of
:class:`~partnerpay.payments.schemas.PaymentIn` and
:class:`~partnerpay.payments.schemas.ExternalPaymentIn`). That form holds nothing secret
(a card is its brand, last four digits, expiry and name; an account its name, BSB and last
four digits), so the fingerprint needs no key and tells nobody a card or account number.
"""

import hashlib
import json
from collections.abc import Mapping


def fingerprint(canonical: Mapping[str, object]) -> str:
    """64 hex digits that are equal for two requests exactly when their canonical forms are."""
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
