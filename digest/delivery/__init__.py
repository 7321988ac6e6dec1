"""Delivery: the outbox (plan, claim, mark) and the mailers. Knows nothing of papers."""
