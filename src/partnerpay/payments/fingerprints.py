"""Fingerprints of payment requests: how a retry is told from another request that was
sent with the same idempotency key.

A fingerprint is an HMAC-SHA256 of the request's canonical form (``canonical()`` of
:class:`~partnerpay.payments.schemas.PaymentIn` and
:class:`~partnerpay.payments.schemas.ExternalPaymentIn`), under
``PARTNERPAY_FINGERPRINT_KEY``. It is keyed because a card's number is part of it: a
plain hash of a number whose brand and last four digits are stored beside it could be
found by hashing every number that fits.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping

from pydantic import SecretStr

SANDBOX_KEY = b"partnerpay sandbox request fingerprints"
"""The key while ``PARTNERPAY_FINGERPRINT_KEY`` is unset; production sets its own."""


def fingerprint(key: SecretStr, canonical: Mapping[str, object]) -> str:
    """64 hex digits that are equal for two requests exactly when their canonical forms are."""
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    secret = key.get_secret_value().encode() or SANDBOX_KEY
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
