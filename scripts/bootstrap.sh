#!/usr/bin/env bash
# Idempotent set-up shared by the quick-start commands: uv, the virtualenv, Debian packages.
# Usage: scripts/bootstrap.sh [--train] [--debs "pkg1 pkg2"]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"

extras=()
debs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --train) extras+=(--extra train) ;;
    --debs) debs="$2"; shift ;;
    *) echo "bootstrap: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

if ! command -v uv >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    # Debian and Ubuntu ship Python without pip.
    echo "bootstrap: installing python3-pip (for uv)" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  echo "bootstrap: installing uv" >&2
  # Debian 12+ marks its Python externally managed (PEP 668): a --user install needs the flag.
  python3 -m pip install --user --quiet uv 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages uv
fi

missing=()
for pkg in $debs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --inexact: a `train` extra installed before (uv sync --extra train) stays installed.
uv sync --frozen --inexact --quiet "${extras[@]}"
