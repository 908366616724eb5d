"""SIGKILL during the final evaluation: the run is left resumable with the checkpoints an
uninterrupted run has (no extra, unpruned one), and running it again writes the same test metrics."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from cmdrec.artifacts.checkpoint import list_checkpoints
from cmdrec.artifacts.runs import list_runs
from cmdrec.config import to_dict
from tests.conftest import tiny_run


def config_file(tiny_data, tmp_path, name):
    # evaluation one history at a time: a final evaluation long enough to be killed inside
    config = tiny_run(
        tiny_data,
        tmp_path / "runs",
        name,
        training={"epochs": 2, "checkpoint_every_steps": 4, "keep_checkpoints": 1},
        eval={"batch_size": 1},
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    return path


def train_command(path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "cmdrec", "train", "--config", str(path)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process):
    output = process.communicate(timeout=240)[0]
    assert process.returncode == 0, output


def metrics(run):
    result = json.loads((run / "results.json").read_text())
    return {k: v for k, v in result["test"].items() if "@" in k or k == "loss"}, result["steps"]


def test_a_run_killed_in_its_final_evaluation_resumes_to_the_same_results(tiny_data, tmp_path):
    finished(train_command(config_file(tiny_data, tmp_path, "straight")))
    straight = tmp_path / "runs" / "straight"
    expected, last_step = metrics(straight)
    expected_checkpoints = [p.name for p in list_checkpoints(straight / "checkpoints")]

    killed = tmp_path / "runs" / "killed"
    path = config_file(tiny_data, tmp_path, "killed")
    job = train_command(path)
    deadline = time.monotonic() + 180
    # the last epoch's checkpoint is written at its validation, right before the final evaluation
    while time.monotonic() < deadline and job.poll() is None:
        if any(int(p.name) == last_step for p in list_checkpoints(killed / "checkpoints")):
            break
        time.sleep(0.002)
    assert job.poll() is None, "the run ended before it could be killed"
    os.kill(job.pid, signal.SIGKILL)
    job.communicate(timeout=30)
    assert not (killed / "results.json").exists()
    [listed] = [r for r in list_runs(tmp_path / "runs") if r["name"] == "killed"]
    assert listed["state"] == "resumable"

    finished(train_command(path))
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == expected_checkpoints
    assert metrics(killed) == (expected, last_step)
    assert json.loads((killed / "status.json").read_text())["state"] == "finished"
