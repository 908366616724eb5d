#!/usr/bin/env bash
# Set up, then run the main job on the bundled sample: generate the log, process and preprocess it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/cmdrec quickstart "$@"
