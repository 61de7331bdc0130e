"""Payouts: a settlement account's money paid out to the firm's bank account."""
