#!/usr/bin/env bash
# Start a named long run in a detached tmux session, logging to runs/<name>.log.
#   bash scripts/launch.sh NAME cmdrec train --config configs/baselines/gpt2.yaml data_dir=outputs/vs/preprocessed
# The session ends with the command, so `tmux ls` lists only live runs; the exit status is written
# to runs/<name>.exit. Re-running the same training command later resumes the run from its last
# checkpoint. The command runs with the virtualenv of $CMDREC_VENV, else the active one, else .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/launch.sh NAME COMMAND [ARGS...]" >&2
  exit 2
fi
name="$1"; shift
session="cmdrec-$name"
command -v tmux >/dev/null || { echo "tmux is not installed (apt-get install tmux)" >&2; exit 1; }
if tmux has-session -t "=$session" 2>/dev/null; then
  echo "run $name is still going: tmux attach -t $session" >&2
  exit 1
fi
venv="${CMDREC_VENV:-${VIRTUAL_ENV:-$(pwd)/.venv}}"
path_prefix=""
[ -x "$venv/bin/python" ] && path_prefix="$venv/bin:"
mkdir -p runs
log="$(pwd)/runs/$name.log"
status="$(pwd)/runs/$name.exit"
rm -f "$status"
printf -v quoted '%q ' "$@"
# a wide pane and slow progress bars: the log gets one line per update, not a flood of redraws
tmux new-session -d -x 200 -y 50 -s "$session" \
  "export PATH=$path_prefix\$PATH TQDM_MININTERVAL=30; $quoted 2>&1 | tee -a $log; code=\${PIPESTATUS[0]}; echo \$code > $status; echo \"[exit \$code]\" >> $log"
sleep 2
if [ -f "$status" ] && [ "$(cat "$status")" != "0" ]; then
  echo "run $name failed at once (exit $(cat "$status")); the end of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "started $session"
echo "  attach:  tmux attach -t $session   (detach again with Ctrl-b d)"
echo "  follow:  tail -f $log"
echo "  status:  cmdrec runs; the exit status lands in $status"
