"""The job runner of ``partnerpay serve`` and ``partnerpay worker``, with every domain's
job kinds.

A domain's ``tasks`` module registers its kinds with :mod:`partnerpay.jobs.kinds` when it
is imported; this module imports each of them, so that the runner runs every kind and
``app.py`` and ``cli.py`` need not know which domains have jobs. A domain with new kinds
adds its import here.
"""

import partnerpay.payments.tasks  # registers reconciliation
import partnerpay.payouts.tasks  # registers the payout run
import partnerpay.webhooks.tasks  # noqa: F401  (registers webhook delivery)
from partnerpay.config import Settings
from partnerpay.db import Database
from partnerpay.jobs.kinds import registered_kinds
from partnerpay.jobs.runner import Runner


def job_runner(database: Database, settings: Settings) -> Runner:
    """A runner of one of each registered kind (not yet started)."""
    return Runner(database, registered_kinds(database, settings))
