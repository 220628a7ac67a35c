"""Outbound HTTP: the target guard, the pinned clients and their connection pool, signed webhooks."""
