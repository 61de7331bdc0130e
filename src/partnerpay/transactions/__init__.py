"""Transactions: FeeWise's view of the money clients paid in, payment by payment."""
