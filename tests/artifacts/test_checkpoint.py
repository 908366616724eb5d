import pytest
import torch

from cmdrec.artifacts.checkpoint import WEIGHTS, list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from cmdrec.config import LayersConfig, ModelConfig
from cmdrec.data.sequences import load_schema
from cmdrec.errors import InputError
from cmdrec.models.build import build_model


def model(tiny_data, seed):
    torch.manual_seed(seed)
    return build_model(
        ModelConfig(d_model=16, layers=LayersConfig(1, 2), max_length=12, tie_weights=True), load_schema(tiny_data)
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


def test_a_bit_flip_of_the_right_size_is_named_as_a_checksum_mismatch(tiny_data, tmp_path):
    path = save_checkpoint(tmp_path, 1, model(tiny_data, 0), {}, {}, {})
    data = bytearray((path / WEIGHTS).read_bytes())
    data[-1] ^= 1
    (path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(InputError, match="has the right size but not its checksum"):
        load_checkpoint(path, model(tiny_data, 0))


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_trainer_state_holding_a_pickle_payload_is_refused_as_unsafe(tiny_data, tmp_path, capsys):
    import json

    from cmdrec.artifacts.checkpoint import MANIFEST, TRAINER_STATE, sha256_file

    path = save_checkpoint(tmp_path, 1, model(tiny_data, 0), {}, {}, {})
    torch.save({"position": Payload()}, path / TRAINER_STATE)
    manifest = json.loads((path / MANIFEST).read_text())  # a consistent manifest: only the payload is wrong
    manifest["files"][TRAINER_STATE] = {"bytes": (path / TRAINER_STATE).stat().st_size,
                                        "sha256": sha256_file(path / TRAINER_STATE)}  # fmt: skip
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="trainer_state.pt holds objects .* refused as unsafe"):
        load_checkpoint(path, model(tiny_data, 0))
    assert "this must never run" not in capsys.readouterr().out


def test_a_full_disk_names_the_file_removes_the_partial_checkpoint_and_keeps_the_previous(
    tiny_data, tmp_path, monkeypatch
):
    import cmdrec.artifacts.checkpoint as checkpoint

    first = save_checkpoint(tmp_path, 1, model(tiny_data, 0), {}, {}, {})

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file: "
                           "No space left on device")  # fmt: skip

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(
        InputError, match=r"could not write trainer_state.pt: no space left on device .* 00000001 stays"
    ):
        save_checkpoint(tmp_path, 2, model(tiny_data, 0), {}, {}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000001"]  # no .tmp-* left behind
    assert list_checkpoints(tmp_path) == [first]
