"""Runs and bundles written by config format 2 (tests/fixtures/format1: a flat model config whose
max_length counted the predicted event) load with today's code, resolve to today's sections, and
predict and score exactly as they did."""

import json
import shutil
from pathlib import Path

import pytest

from cmdrec.artifacts.bundle import load_model_dir
from cmdrec.artifacts.migrate import migrate_model_config
from cmdrec.config import ModelConfig, from_dict, to_dict
from cmdrec.serving import Predictor
from cmdrec.training.evaluate import evaluate_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "format1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
CASES = [(name, kind) for name, entry in EXPECTED["models"].items() for kind in entry]


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """A copy, so nothing the loaders might write lands in the repository."""
    root = tmp_path_factory.mktemp("format1")
    shutil.copytree(FIXTURES, root, dirs_exist_ok=True)
    return root


@pytest.mark.parametrize("name,kind", CASES)
def test_an_old_run_or_bundle_predicts_and_scores_as_it_did(copied, name, kind):
    path = copied / ("runs" if kind == "run" else "bundles") / name
    expected = EXPECTED["models"][name][kind]
    predictor = Predictor(path)
    for history, commands, scores in zip(EXPECTED["histories"], expected["commands"], expected["scores"], strict=True):
        answer = predictor.recommend(history, k=5)
        assert answer.commands == commands
        assert answer.scores == pytest.approx(scores, rel=1e-5, abs=1e-6)
    model, config = load_model_dir(path)
    if kind == "bundle":
        config = config.__class__(**{**config.__dict__, "data_dir": str(copied / "data")})
    metrics = evaluate_model(model, config, None, "test")
    assert {k: metrics[k] for k in expected["test"]} == pytest.approx(expected["test"], rel=1e-6)


def test_an_old_model_config_resolves_to_the_sections_of_its_backbone(copied):
    old = json.loads((copied / "runs/mixtral/checkpoints/00000012/model_config.json").read_text())
    assert old["max_length"] == 8 and "n_experts" in old
    model = from_dict(ModelConfig, migrate_model_config(old, 2))
    assert model.max_length == 7 and model.positions == 8 and model.window_length == 8
    assert (model.layers.n_layers, model.layers.ffn_dim) == (1, 24)
    assert (model.experts.n_experts, model.experts.experts_per_token) == (2, 1)
    assert model.pretrained is None and "pretrained" not in to_dict(model)
    _, config = load_model_dir(copied / "bundles/lora")
    assert config.model.pretrained.path.endswith("decoder") and config.model.layers is None
    assert "layers" not in to_dict(config.model) and "n_layers" not in json.dumps(to_dict(config))
    bert = from_dict(ModelConfig, migrate_model_config(json.loads(
        (copied / "runs/bert/checkpoints/00000012/model_config.json").read_text()), 2))  # fmt: skip
    assert bert.max_length == 8 and bert.window_length == 8 and bert.history_length == 7  # mlm: the mask is read
