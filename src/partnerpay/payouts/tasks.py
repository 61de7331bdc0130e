"""Payouts' background work: a payout run every ``PARTNERPAY_PAYOUT_INTERVAL`` seconds
(a day by default), on one runner at a time."""

from datetime import timedelta

from partnerpay.config import Settings
from partnerpay.db import Database
from partnerpay.jobs.periodic import register_periodic
from partnerpay.payouts.service import run_payouts


def run_scheduled_payouts(database: Database, settings: Settings) -> None:
    run_payouts(database, settings)


def payout_interval(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.payout_interval)


register_periodic("run-payouts", payout_interval, run_scheduled_payouts)
