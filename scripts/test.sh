#!/usr/bin/env bash
# Runs every check: lint, format, types, and the whole test suite. Bootstraps what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
# Real services the tests start themselves (no mocks): Redis, PostgreSQL, nginx, Caddy, promtool,
# logrotate, pebble + certbot (ACME on loopback), and Chromium for the console tests.
TEST_DEBS="redis-server postgresql nginx caddy prometheus logrotate pebble certbot chromium fonts-wqy-microhei"
scripts/bootstrap.sh --train --debs "${NLUSERVE_TEST_DEBS:-$TEST_DEBS}"
uv run --frozen ruff check src tests bench scripts
uv run --frozen ruff format --check src tests bench scripts
uv run --frozen mypy
uv run --frozen pytest "$@"
