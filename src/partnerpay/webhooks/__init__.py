"""Webhook subscriptions (``service.py``, ``routes.py``), where they may point
(``destinations.py``) and how a delivery is sent and signed (``sender.py``)."""
