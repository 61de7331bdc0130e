"""Webhooks: a partner's subscriptions (``service.py``, ``routes.py``), where they may point
(``destinations.py``), how a delivery is signed and sent (``sender.py``), and the job that
sends the outbox's deliveries (``tasks.py``). It builds on :mod:`partnerpay.events`, whose
tables hold the subscriptions, events and deliveries."""
