"""Invoices: an artifact kind (registered with :mod:`partnerpay.artifacts.kinds` on import)."""

from partnerpay.invoices import kind as _kind  # noqa: F401  (registers the kind)
