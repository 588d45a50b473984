"""Registries: references, credentials, transfers, and the trust decided by signatures and keys."""
