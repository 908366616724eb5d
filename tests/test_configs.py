"""Every shipped run config loads and builds its model."""

from pathlib import Path

import pytest
import torch

from cmdrec.artifacts.loading import load_pretrained
from cmdrec.config import load_run_config
from cmdrec.data.sequences import load_schema
from cmdrec.errors import InputError
from cmdrec.models.build import build_baseline, build_model, is_neural

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted((ROOT / "configs").glob("*/*.yaml"))
RUN_CONFIGS = [p for p in RUN_CONFIGS if p.parent.name not in ("data", "sweeps")]
SWEEP_SPACES = {  # each shipped search space and the run config it is made for
    "gpt2_sample": "configs/baselines/gpt2.yaml",
    "llama_vs": "configs/baselines/llama.yaml",
    "full_vs": "configs/full/mixtral_full.yaml",
}


def test_every_shipped_search_space_loads_against_its_config():
    from cmdrec.config import load_yaml
    from cmdrec.experiments.sweep import load_space

    assert {p.stem for p in (ROOT / "configs/sweeps").glob("*.yaml")} == set(SWEEP_SPACES)
    for space, config in SWEEP_SPACES.items():
        assert load_space(ROOT / f"configs/sweeps/{space}.yaml", load_yaml(ROOT / config))


def test_there_is_a_config_for_each_baseline():
    names = {p.stem for p in (ROOT / "configs/baselines").glob("*.yaml")}
    assert names >= {"popular", "repeat_last", "markov", "gru4rec", "gpt2", "llama", "bert4rec", "xlnet"}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaModel

    path = tmp_path_factory.mktemp("llama") / "tiny"
    LlamaModel(
        LlamaConfig(
            vocab_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        )
    ).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=[p.stem for p in RUN_CONFIGS])
def test_shipped_config_builds(path, tiny_data, tiny_data_with_developer, tiny_llama):
    config = load_run_config(path, [f"data_dir={tiny_data}"])
    if "developer_id" in config.model.input_features:
        config = load_run_config(path, [f"data_dir={tiny_data_with_developer}"])
    if config.model.backbone == "pretrained":  # the real checkpoint is not here: same config on a tiny Llama
        config = load_run_config(path, [f"data_dir={tiny_data}", f"model.pretrained={tiny_llama}"])
    schema = load_schema(config.data_dir)
    text_table = torch.randn(schema.item_id.cardinality, 8) if config.model.text_embeddings else None
    decoder = load_pretrained(config.model, torch.device("cpu"))
    model = (
        build_model(config.model, schema, text_table, decoder)
        if is_neural(config.model)
        else build_baseline(config.model, schema)
    )
    assert model is not None


def test_unknown_backbone_lists_the_known_ones(tiny_data):
    config = load_run_config(None, ["model.backbone=transformerxl"])
    with pytest.raises(InputError, match="known: .*gpt2"):
        build_model(config.model, load_schema(tiny_data))


def test_run_config_rejects_unknown_keys():
    with pytest.raises(InputError, match="training.epoch"):
        load_run_config(None, ["training.epoch=3"])


def test_model_shape_is_validated():
    with pytest.raises(InputError, match="divisible"):
        load_run_config(None, ["model.d_model=10", "model.n_heads=3"])
