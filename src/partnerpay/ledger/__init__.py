"""The ledger: every movement of a firm's money, the only source of its balances."""
