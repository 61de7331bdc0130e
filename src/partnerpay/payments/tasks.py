"""Payments' background work: reconciliation with the gateway, every
``PARTNERPAY_RECONCILE_INTERVAL`` seconds, on one runner at a time."""

from datetime import timedelta

from partnerpay.config import Settings
from partnerpay.db import Database
from partnerpay.jobs.kinds import register
from partnerpay.jobs.periodic import PeriodicKind, periodic
from partnerpay.payments.gateways import gateway_for
from partnerpay.payments.service import reconcile_all

RECONCILE = "reconcile-payments"


def reconcile_payments(database: Database, settings: Settings) -> None:
    reconcile_all(database, gateway_for(settings), settings)


def reconciliation(database: Database, settings: Settings) -> PeriodicKind:
    every = timedelta(seconds=settings.reconcile_interval)
    return periodic(RECONCILE, every, reconcile_payments)(database, settings)


register(RECONCILE, reconciliation)
