"""The payable artifact: what invoices, and later charges and trust deposits, share.

An artifact has an amount, a matter and a debtor, a settlement account and one status
machine (``Submitted``, ``Authorised``, ``Paid``, ``Voided``); :mod:`.service` holds the
rules for applying a payment, an adjustment or a void to it. Each kind (an invoice today)
keeps its own table, with the shared columns from :class:`.models.Artifact`, and registers
itself in :mod:`.kinds`, so that payments reach any kind without importing it.

This package imports no domain that builds on it: not ``invoices``, not ``payments``.
"""
