import pytest
import torch

from cmdrec.artifacts.checkpoint import WEIGHTS, list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from cmdrec.config import ModelConfig
from cmdrec.data.sequences import load_schema
from cmdrec.errors import InputError
from cmdrec.models.build import build_model


def model(tiny_data, seed):
    torch.manual_seed(seed)
    return build_model(
        ModelConfig(d_model=16, n_layers=1, n_heads=2, max_length=12, tie_weights=True), load_schema(tiny_data)
    )


def test_round_trip_restores_weights_and_state(tiny_data, tmp_path):
    original, restored = model(tiny_data, 0), model(tiny_data, 1)
    state = {"position": {"epoch": 1, "batch": 3}, "rng": {"torch": torch.get_rng_state()}}
    path = save_checkpoint(tmp_path, 7, original, state, {"d_model": 16}, {"ndcg@10": 0.5})
    assert path.name == "00000007"
    loaded = load_checkpoint(path, restored)
    assert loaded["position"] == {"epoch": 1, "batch": 3}
    for (name, a), (_, b) in zip(original.state_dict().items(), restored.state_dict().items(), strict=False):
        assert torch.equal(a, b), name
    # tied weights stay tied after loading
    assert (
        restored.heads["command"].tied_embedding.weight.data_ptr() == restored.inputs.item_embedding.weight.data_ptr()
    )


def test_truncated_checkpoint_is_detected(tiny_data, tmp_path):
    path = save_checkpoint(tmp_path, 1, model(tiny_data, 0), {}, {}, {})
    weights = path / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match="is damaged: model.safetensors has 100 bytes"):
        load_checkpoint(path, model(tiny_data, 0))


def test_checkpoint_without_manifest_is_incomplete(tiny_data, tmp_path):
    path = save_checkpoint(tmp_path, 1, model(tiny_data, 0), {}, {}, {})
    (path / "manifest.json").unlink()
    with pytest.raises(InputError, match="incomplete"):
        load_checkpoint(path, model(tiny_data, 0))


def test_pruning_keeps_the_newest_and_the_protected(tiny_data, tmp_path):
    net = model(tiny_data, 0)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, net, {}, {}, {})
    prune_checkpoints(tmp_path, keep=2, protect={tmp_path / "00000001"})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["00000001", "00000003", "00000004"]
