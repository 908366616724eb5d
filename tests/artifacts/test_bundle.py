"""Bundles: exported for every kind of model, copied anywhere, served alike; damaged ones refused."""

import json
import shutil

import polars as pl
import pytest

from cmdrec.artifacts.bundle import BUNDLE_FILE, BUNDLE_FORMAT_VERSION, export_bundle, load_bundle
from cmdrec.cli import main
from cmdrec.errors import InputError
from cmdrec.models.baselines import Markov
from cmdrec.serving import Predictor
from cmdrec.training.loop import train
from tests.conftest import tiny_run

FULL = {
    "backbone": "mixtral",
    "input_features": ["category", "position"],
    "fusion": "attention",
    "aux_tasks": ["category"],
    "history_copy": True,
}


def histories(data_dir):
    names = pl.read_parquet(data_dir / "items.parquet").sort("command")["name"].to_list()
    return [[names[i] for i in s[:-1]] for s in pl.read_parquet(data_dir / "test.parquet")["command"].to_list()]


def suggestions(predictor, data_dir, **kwargs):
    return [(a.commands, a.scores) for a in predictor.recommend_many(histories(data_dir), k=5, **kwargs)]


@pytest.mark.parametrize("model", [{"backbone": "gpt2"}, {"backbone": "markov"}, FULL], ids=["gpt2", "markov", "full"])
def test_a_bundle_copied_elsewhere_serves_what_the_run_serves(tiny_data, tmp_path, monkeypatch, model):
    train(tiny_run(tiny_data, tmp_path / "runs", "run", model=model, training={"epochs": 1}), show_progress=False)
    expected = suggestions(Predictor(tmp_path / "runs" / "run"), tiny_data)
    assert main(["export", str(tmp_path / "runs" / "run"), "--out", str(tmp_path / "bundle")]) == 0
    moved = shutil.copytree(tmp_path / "bundle", tmp_path / "elsewhere" / "copy")
    shutil.rmtree(tmp_path / "bundle")
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr(Markov, "fit", lambda *a: pytest.fail("a bundled baseline must not refit"))
    assert suggestions(Predictor("copy"), tiny_data) == expected
    info = json.loads((moved / BUNDLE_FILE).read_text())
    assert info["format_version"] == BUNDLE_FORMAT_VERSION == 2 and info["run"]["name"] == "run"
    assert info["libraries"]["torch"]
    assert len(info["data_fingerprint"]) == 64 and "schema.json" in info["files"]
    commands = json.loads((moved / "commands.json").read_text())
    assert {"command", "category", "description"} <= set(commands[2])


def test_a_run_moved_with_its_data_or_used_from_another_directory_still_loads(tiny_data, tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(tiny_data, project / "data")
    monkeypatch.chdir(project)  # the config's data_dir is relative to where training ran
    train(tiny_run("data", "runs", "run", training={"epochs": 1}), show_progress=False)
    expected = suggestions(Predictor("runs/run"), tiny_data)
    shutil.move(project, tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    assert suggestions(Predictor(tmp_path / "moved" / "runs" / "run"), tiny_data) == expected


def test_damaged_or_newer_bundles_are_refused_with_the_reason(tiny_data, tmp_path):
    train(tiny_run(tiny_data, tmp_path, "run", training={"epochs": 1}), show_progress=False)
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle")
    with pytest.raises(InputError, match="exists and is not empty"):
        export_bundle(tmp_path / "run", bundle)
    weights = bundle / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="model.safetensors does not match its checksum"):
        load_bundle(bundle)
    info = json.loads((bundle / BUNDLE_FILE).read_text())
    (bundle / BUNDLE_FILE).write_text(json.dumps(info | {"format_version": 99}))
    with pytest.raises(InputError, match="bundle format 99.*upgrade cmdrec"):
        load_bundle(bundle)
    (bundle / BUNDLE_FILE).write_text("{not json")
    with pytest.raises(InputError, match="cannot be read as a bundle manifest"):
        load_bundle(bundle)


def test_event_attribute_values_are_stored_as_salted_hashes_unless_kept(tiny_data_with_developer, tmp_path):
    data = tiny_data_with_developer
    run = tmp_path / "run"
    train(tiny_run(data, tmp_path, "run", model={"input_features": ["developer_id"]}, training={"epochs": 1}),
          show_progress=False)  # fmt: skip
    developers = [{"developer_id": d} for d in pl.read_parquet(data / "test.parquet")["user_id"].to_list()]
    expected = suggestions(Predictor(run), data, attributes=developers)
    hashed = export_bundle(run, tmp_path / "hashed")
    vocabulary = json.loads((hashed / "workflow" / "workflow.json").read_text())["categorify"]["developer_id"]
    assert not set(vocabulary["values"]) & {d["developer_id"] for d in developers}
    assert "salted hashes" in json.loads((hashed / BUNDLE_FILE).read_text())["personal_data"]["developer_id"]
    assert suggestions(Predictor(hashed), data, attributes=developers) == expected
    kept = export_bundle(run, tmp_path / "kept", keep_attribute_values=True)
    assert "as given" in json.loads((kept / BUNDLE_FILE).read_text())["personal_data"]["developer_id"]
    assert suggestions(Predictor(kept), data, attributes=developers) == expected


def test_evaluating_a_bundle_needs_the_dataset_it_was_trained_on(tiny_data, tiny_data_with_developer, tmp_path):
    train(tiny_run(tiny_data, tmp_path, "run", training={"epochs": 1}), show_progress=False)
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle")
    assert main(["evaluate", str(bundle)]) == 2  # no splits in a bundle
    assert main(["evaluate", str(bundle), "--data", str(tiny_data)]) == 0
    assert main(["evaluate", str(bundle), "--data", str(tiny_data_with_developer)]) == 2


def test_a_run_from_before_run_records_loads_and_damaged_runs_are_explained(tiny_data, tmp_path):
    from cmdrec.artifacts.loading import RUN_RECORD, load_trained

    train(tiny_run(tiny_data, tmp_path, "run", training={"epochs": 1}), show_progress=False)
    run = tmp_path / "run"
    (run / RUN_RECORD).unlink()  # as runs were written before format 2: data_dir from the config as given
    expected = suggestions(Predictor(run), tiny_data)
    assert suggestions(Predictor(run), tiny_data) == expected
    results = (run / "results.json").read_text()
    (run / "results.json").write_text("")
    with pytest.raises(InputError, match=r"results.json is damaged: not valid JSON"):
        load_trained(run)
    (run / "results.json").write_text(results)
    best = json.loads(results)["best_step"]
    shutil.rmtree(run / "checkpoints" / f"{best:08d}")
    with pytest.raises(InputError, match=f"the best checkpoint {best:08d} is missing"):
        load_trained(run)
