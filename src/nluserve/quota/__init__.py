"""Quota stores: the daily quota and the burst rate limit, decided and counted atomically."""
