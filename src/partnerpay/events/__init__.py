"""The event outbox: events written in the transaction of the change they report
(``outbox.py``), their deliveries to subscribed webhooks and the job that sends them
(``tasks.py``), and the partner's event log and redelivery (``service.py``, ``routes.py``)."""
