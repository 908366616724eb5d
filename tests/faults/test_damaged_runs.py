"""A finished run with one file damaged at a time: every command that reads it either works (when it
does not need that file) or says which file is wrong; never a raw traceback."""

import json
import shutil

import pytest

from cmdrec.artifacts.checkpoint import list_checkpoints
from cmdrec.cli import main
from cmdrec.training.loop import train
from tests.conftest import tiny_run


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    train(tiny_run(tiny_data, root / "runs", "run", training={"epochs": 2}), show_progress=False)
    return root / "runs" / "run"


def best_checkpoint(run):
    best = json.loads((run / "results.json").read_text())["best_step"]
    return run / "checkpoints" / f"{best:08d}"


DAMAGES = {
    "manifest not JSON": (
        lambda run: (best_checkpoint(run) / "manifest.json").write_text("{not json"),
        "manifest.json",
    ),
    "weights deleted": (lambda run: (best_checkpoint(run) / "model.safetensors").unlink(), "model.safetensors"),
    "model config emptied": (lambda run: (best_checkpoint(run) / "model_config.json").write_text(""), "model_config"),
    "best checkpoint deleted": (lambda run: shutil.rmtree(best_checkpoint(run)), "checkpoint"),
    "config not YAML": (lambda run: (run / "config.yaml").write_text("model: [unclosed"), "config.yaml"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_evaluate_and_export_name_the_damaged_file(finished_run, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    harm, named = DAMAGES[damage]
    harm(run)
    for command in (["evaluate", str(run)], ["export", str(run), "--out", str(tmp_path / "bundle")]):
        assert main(command) == 2, command
        error = capsys.readouterr().err
        assert error.startswith("error: ") and named in error, (command, error)


def test_what_is_not_needed_may_be_missing_and_listings_survive_damaged_files(finished_run, tmp_path, capsys):
    run = tmp_path / "runs" / "run"
    shutil.copytree(finished_run, run)
    for checkpoint in list_checkpoints(run / "checkpoints"):
        (checkpoint / "trainer_state.pt").unlink()  # the optimizer state: only resuming needs it
    assert main(["evaluate", str(run)]) == 0
    assert main(["recommend", str(run), "--history", "Wall", "Door"]) == 0
    (run / "results.json").write_text("")
    (run / "status.json").write_text("{broken")
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "runs")]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split()[0] == "run" and "unknown" in row  # a status that cannot be read, said so
    json.loads((finished_run / "results.json").read_text())  # the fixture itself is untouched
