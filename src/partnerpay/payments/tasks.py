"""Payments' background work: reconciliation with the gateway, every
``PARTNERPAY_RECONCILE_INTERVAL`` seconds, on one runner at a time."""

from datetime import timedelta

from partnerpay.config import Settings
from partnerpay.db import Database
from partnerpay.jobs.periodic import register_periodic
from partnerpay.payments.gateways import gateway_for
from partnerpay.payments.service import reconcile_all


def reconcile_payments(database: Database, settings: Settings) -> None:
    reconcile_all(database, gateway_for(settings), settings)


def reconcile_interval(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.reconcile_interval)


register_periodic("reconcile-payments", reconcile_interval, reconcile_payments)
