"""partnerpay: invoicing and payments for professional firms, reached through a Partner API."""
