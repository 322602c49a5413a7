"""Tenants, API keys, tokens, quotas: plain Python services over the db and Redis adapters."""
