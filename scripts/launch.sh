#!/usr/bin/env bash
# Start a named long run in a detached tmux session, logging to runs/<name>.log.
#   bash scripts/launch.sh NAME cmdrec train --config configs/baselines/gpt2.yaml data_dir=outputs/vs/preprocessed
# Re-running the same training command later resumes the run from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/launch.sh NAME COMMAND [ARGS...]" >&2
  exit 2
fi
name="$1"; shift
session="cmdrec-$name"
command -v tmux >/dev/null || { echo "tmux is not installed (apt-get install tmux)" >&2; exit 1; }
if tmux has-session -t "$session" 2>/dev/null; then
  echo "tmux session $session is already running: tmux attach -t $session" >&2
  exit 1
fi
mkdir -p runs
log="runs/$name.log"
venv_bin="$(pwd)/.venv/bin"
printf -v quoted '%q ' "$@"
tmux new-session -d -s "$session" "export PATH=$venv_bin:\$PATH; $quoted 2>&1 | tee -a $log; echo \"[exit \${PIPESTATUS[0]}]\" | tee -a $log; sleep 86400"
echo "started $session"
echo "  attach:  tmux attach -t $session   (detach again with Ctrl-b d)"
echo "  follow:  tail -f $log"
echo "  status:  cmdrec runs"
