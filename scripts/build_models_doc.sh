#!/usr/bin/env bash
# Regenerates docs/models.md from docs/models.head.md, the manifests and bench/raw.py output.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  cat docs/models.head.md
  echo
  echo "## The models"
  echo
  uv run --frozen python scripts/model_card.py general medical sentiment
  cat docs/models.speed.md
} > docs/models.md
