"""Data-parallel training with 2 gloo processes on the CPU, launched as users launch it
(`cmdrec train --nproc 2`, torch's elastic launcher underneath)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from safetensors.torch import load_file

from cmdrec.artifacts.checkpoint import list_checkpoints
from cmdrec.config import to_dict
from cmdrec.training.loop import train
from tests.conftest import tiny_run

pytest.importorskip("torch.distributed")


def config_file(tiny_data, tmp_path, name, **training):
    sections = {"model": {"dropout": 0.0}, "training": {"epochs": 3, "batch_size": 16, "early_stopping_patience": None,
                                                        **training}}  # fmt: skip
    config = tiny_run(tiny_data, tmp_path / "runs", name, **sections)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    return config, path


def launch(path, **popen):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "cmdrec", "train", "--config", str(path), "--nproc", "2"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def descendants(pid):
    """Every process below `pid` (the launcher may start its ranks in sessions of their own)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, frontier = [], [pid]
    while frontier:
        frontier = [c for p in frontier for c in children.get(p, [])]
        found += frontier
    return found


def kill_after_checkpoint(job, checkpoints, step: int) -> None:
    """SIGKILL the launcher and every rank at once, as a node dies, once a checkpoint of `step` or later exists."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and job.poll() is None:
        if any(int(p.name) >= step for p in list_checkpoints(checkpoints)):
            break
        time.sleep(0.01)
    assert job.poll() is None, "the job ended before it could be killed"
    for pid in [job.pid, *descendants(job.pid)]:
        os.kill(pid, signal.SIGKILL)
    job.communicate(timeout=30)


def finish(process, timeout=240):
    output = process.communicate(timeout=timeout)[0]
    assert process.returncode == 0, output
    return output


def test_two_processes_match_one_at_the_same_global_batch(tiny_data, tmp_path):
    single_config, _ = config_file(tiny_data, tmp_path, "single")
    single = train(single_config, show_progress=False)
    _, path = config_file(tiny_data, tmp_path, "ddp")
    output = finish(launch(path))
    assert "ddp test:" in output and output.count("run directory:") == 1  # rank 0 alone reports
    ddp = json.loads((tmp_path / "runs" / "ddp" / "results.json").read_text())
    assert ddp["steps"] == single["steps"]  # the same global batches
    assert abs(ddp["valid"]["ndcg@10"] - single["valid"]["ndcg@10"]) <= 0.005
    assert abs(ddp["valid"]["loss"] - single["valid"]["loss"]) <= 0.01 * single["valid"]["loss"]
    status = json.loads((tmp_path / "runs" / "ddp" / "status.json").read_text())
    assert status["state"] == "finished" and status["world_size"] == 2


def test_the_whole_job_killed_mid_epoch_resumes_to_the_same_weights(tiny_data, tmp_path):
    _, straight = config_file(tiny_data, tmp_path, "straight", epochs=6, checkpoint_every_steps=2)
    finish(launch(straight))
    _, killed = config_file(tiny_data, tmp_path, "killed", epochs=6, checkpoint_every_steps=2)
    checkpoints = tmp_path / "runs" / "killed" / "checkpoints"
    kill_after_checkpoint(launch(killed), checkpoints, step=3)
    assert not (tmp_path / "runs" / "killed" / "results.json").exists()
    finish(launch(killed))
    a = load_file(str(list_checkpoints(tmp_path / "runs" / "straight" / "checkpoints")[-1] / "model.safetensors"))
    b = load_file(str(list_checkpoints(checkpoints)[-1] / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    results = [json.loads((tmp_path / "runs" / n / "results.json").read_text()) for n in ("straight", "killed")]
    metrics = [{k: v for k, v in r["test"].items() if "@" in k or k == "loss"} for r in results]
    assert metrics[0] == metrics[1]
