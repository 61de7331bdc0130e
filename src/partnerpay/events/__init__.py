"""The event outbox: topics, events written in the transaction of the change they report
with a delivery to each subscribed webhook (``outbox.py``), and the partner's event log and
redelivery (``service.py``, ``routes.py``). It knows no domain that emits events, and
nothing of how webhooks are sent (``webhooks/``)."""
