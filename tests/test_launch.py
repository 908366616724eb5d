"""scripts/launch.sh: a failing command is reported at once, the session ends with its command, and
a finished or failed name can be launched again."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def launch(tmp_path, name, *command):
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "scripts" / "launch.sh", root / "scripts" / "launch.sh")
    return subprocess.run(["bash", str(root / "scripts" / "launch.sh"), name, *command], capture_output=True, text=True)


def alive(name: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", f"=cmdrec-{name}"], capture_output=True).returncode == 0


def test_a_command_that_fails_at_once_is_reported_and_can_be_launched_again(tmp_path):
    name = f"failing-{time.time_ns()}"
    result = launch(tmp_path, name, "bash", "-c", "echo broken config; exit 3")
    assert result.returncode == 1 and "failed at once (exit 3)" in result.stderr and "broken config" in result.stderr
    assert not alive(name)
    again = launch(tmp_path, name, "bash", "-c", "sleep 30")
    assert again.returncode == 0 and "started" in again.stdout and alive(name)
    assert launch(tmp_path, name, "true").returncode == 1  # still going: refused
    subprocess.run(["tmux", "kill-session", "-t", f"=cmdrec-{name}"], check=True)


def test_the_session_ends_with_its_command_and_leaves_the_exit_status(tmp_path):
    name = f"quick-{time.time_ns()}"
    assert launch(tmp_path, name, "bash", "-c", "sleep 3; echo done").returncode == 0
    deadline = time.time() + 20
    while alive(name) and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(name)
    runs = tmp_path / "repo" / "runs"
    assert (runs / f"{name}.exit").read_text().strip() == "0"
    assert "done" in (runs / f"{name}.log").read_text()
