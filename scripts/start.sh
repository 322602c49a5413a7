#!/usr/bin/env bash
# Quick start: install what is missing, then serve the bundled models on the embedded default
# (SQLite in ./.data). On first start it creates the admin tenant and prints its key once.
# Extra arguments go to `nluserve serve` (e.g. --port 9000 --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
scripts/bootstrap.sh
exec uv run --frozen nluserve serve "$@"
