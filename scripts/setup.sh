#!/usr/bin/env bash
# Create .venv (if missing) and install cmdrec into it with the extras given as arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch is pinned in pyproject.toml; pinning it here first keeps pip from resolving a CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
