#!/usr/bin/env bash
# Set up with the test extras, lint, then run the test suite (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
