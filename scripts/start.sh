#!/usr/bin/env bash
# Quick start: install what is missing, then run nluserve on the embedded default
# (bundled models). Extra arguments go to the command.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
scripts/bootstrap.sh
exec uv run --frozen nluserve predict general "张三在北京大学读书。" "患者自述发热、咳嗽。" "$@"
