"""Fully sharded training (training.fsdp) with 2 gloo processes on the CPU: the same run as one
process, checkpoints that resume exactly after a kill -9 and export to a bundle, and LoRA on a
sharded pretrained decoder."""

import json

import pytest
import yaml
from safetensors.torch import load_file

from cmdrec.artifacts.bundle import export_bundle
from cmdrec.artifacts.checkpoint import list_checkpoints
from cmdrec.config import FsdpConfig, ModelConfig, to_dict
from cmdrec.errors import InputError
from cmdrec.models.build import build_model
from cmdrec.serving import Predictor
from cmdrec.training import fsdp
from cmdrec.training.loop import train
from tests.conftest import tiny_run
from tests.training.test_distributed import finish, kill_after_checkpoint, launch

pytest.importorskip("torch.distributed.fsdp")
SHARDED = {"enabled": True, "wrap_policy": "size_based", "min_num_params": 500}


def config_file(tiny_data, tmp_path, name, model=None, **training):
    # tied: the gathered state holds it under both names; no output bias: a non-persistent buffer to rebuild
    model = {"dropout": 0.0, "tie_weights": True, "output_bias": False, **(model or {})}
    sections = {"model": model, "training": {"epochs": 3, "batch_size": 16, "early_stopping_patience": None,
                                             **training}}  # fmt: skip
    config = tiny_run(tiny_data, tmp_path / "runs", name, **sections)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    return config, path


# mixtral: its validation under FSDP must take the library's forward (lean.py stands aside for hooks)
@pytest.mark.parametrize("backbone", ["gpt2", "mixtral"])
def test_a_sharded_run_matches_one_process_and_exports_a_bundle(tiny_data, tmp_path, backbone):
    single_config, _ = config_file(tiny_data, tmp_path, "single", model={"backbone": backbone})
    single = train(single_config, show_progress=False)
    _, path = config_file(tiny_data, tmp_path, "sharded", model={"backbone": backbone}, fsdp=SHARDED)
    output = finish(launch(path))
    assert "sharded test:" in output
    sharded = json.loads((tmp_path / "runs/sharded/results.json").read_text())
    assert sharded["steps"] == single["steps"] and sharded["parameters"] == single["parameters"]
    assert abs(sharded["valid"]["ndcg@10"] - single["valid"]["ndcg@10"]) <= 0.005
    assert abs(sharded["valid"]["loss"] - single["valid"]["loss"]) <= 0.01 * single["valid"]["loss"]
    bundle = export_bundle(tmp_path / "runs/sharded", tmp_path / "bundle")
    assert len(Predictor(bundle).recommend(["Open", "Wall", "Door"], k=3).commands) == 3


def test_a_sharded_job_killed_mid_epoch_resumes_to_the_same_weights(tiny_data, tmp_path):
    _, straight = config_file(tiny_data, tmp_path, "straight", epochs=4, checkpoint_every_steps=2, fsdp=SHARDED)
    finish(launch(straight))
    _, killed = config_file(tiny_data, tmp_path, "killed", epochs=4, checkpoint_every_steps=2, fsdp=SHARDED)
    checkpoints = tmp_path / "runs/killed/checkpoints"
    kill_after_checkpoint(launch(killed), checkpoints, step=3)
    finish(launch(killed))
    a = load_file(str(list_checkpoints(tmp_path / "runs/straight/checkpoints")[-1] / "model.safetensors"))
    b = load_file(str(list_checkpoints(checkpoints)[-1] / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_block_wrapping_finds_the_backbones_blocks_and_bad_settings_are_refused(tiny_data):
    from cmdrec.data.sequences import load_schema
    from cmdrec.training.distributed import World

    model = build_model(ModelConfig(backbone="gpt2", d_model=16), load_schema(tiny_data))
    blocks = fsdp.wrapped_modules(model, FsdpConfig(enabled=True))
    assert [type(b).__name__ for b in blocks] == ["GPT2Block", "GPT2Block"]
    large = fsdp.wrapped_modules(model, FsdpConfig(enabled=True, wrap_policy="size_based", min_num_params=500))
    assert large and all(sum(p.numel() for p in m.parameters()) >= 500 for m in large)
    cpu = __import__("torch").device("cpu")
    with pytest.raises(InputError, match="--nproc N or torchrun"):
        fsdp.check(FsdpConfig(enabled=True), cpu, World(rank=0, size=1, local_rank=0), ema=False)
    with pytest.raises(InputError, match="cpu_offload .* needs CUDA"):
        fsdp.check(FsdpConfig(enabled=True, cpu_offload=True), cpu, World(rank=0, size=2, local_rank=0), ema=False)


@pytest.mark.parametrize("sharded_checkpoints", [False, True])
def test_lora_on_a_sharded_pretrained_decoder_trains_and_exports(tiny_data, tmp_path, sharded_checkpoints):
    pytest.importorskip("peft")
    import torch
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    decoder = tmp_path / "tiny-llama"
    shape = {"vocab_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32}  # fmt: skip
    LlamaModel(LlamaConfig(**shape)).save_pretrained(decoder)
    pretrained = {"path": str(decoder), "attn_implementation": "eager", "adapter": {"method": "lora", "r": 4}}
    model = {"backbone": "pretrained", "tie_weights": False, "pretrained": pretrained}
    settings = {"enabled": True, "sharded_checkpoints": sharded_checkpoints}
    _, path = config_file(tiny_data, tmp_path, "lora", model=model, epochs=2, fsdp=settings)
    finish(launch(path))
    result = json.loads((tmp_path / "runs/lora/results.json").read_text())
    assert result["test"]["positions_evaluated"] > 0
    last = list_checkpoints(tmp_path / "runs/lora/checkpoints")[-1]
    assert (last / "sharded").is_dir() == sharded_checkpoints
    if not sharded_checkpoints:
        weights = load_file(str(list_checkpoints(tmp_path / "runs/lora/checkpoints")[-1] / "model.safetensors"))
        assert any("lora_A" in name for name in weights) and not any("base_layer" in name for name in weights)
    bundle = export_bundle(tmp_path / "runs/lora", tmp_path / "bundle")
    assert len(Predictor(bundle).recommend(["Open", "Wall"], k=3).commands) == 3


def test_sharded_checkpoints_resume_exactly_evaluate_and_export(tiny_data, tmp_path):
    from cmdrec.artifacts.checkpoint import load_sharded_weights
    from cmdrec.artifacts.loading import load_trained
    from cmdrec.training.evaluate import evaluate_run

    per_rank = {**SHARDED, "sharded_checkpoints": True}
    settings = {"epochs": 4, "checkpoint_every_steps": 2, "fsdp": per_rank}
    _, straight = config_file(tiny_data, tmp_path, "straight", **settings)
    finish(launch(straight))
    _, killed = config_file(tiny_data, tmp_path, "killed", **settings)
    checkpoints = tmp_path / "runs/killed/checkpoints"
    kill_after_checkpoint(launch(killed), checkpoints, step=3)
    finish(launch(killed))
    last = list_checkpoints(checkpoints)[-1]
    assert not (last / "model.safetensors").exists()
    assert len(list((last / "sharded").glob("*.distcp"))) == 2  # one file of shards per rank
    assert list_checkpoints(checkpoints)[-1].name == list_checkpoints(tmp_path / "runs/straight/checkpoints")[-1].name
    weights = {}
    for name in ("straight", "killed"):  # the last checkpoints, past the kill, assembled from their shards
        model = load_trained(tmp_path / "runs" / name)[0]
        load_sharded_weights(model, list_checkpoints(tmp_path / "runs" / name / "checkpoints")[-1] / "sharded")
        weights[name] = model.state_dict()
    a, b = weights["straight"], weights["killed"]
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    result = json.loads((tmp_path / "runs/killed/results.json").read_text())
    assert evaluate_run(tmp_path / "runs/killed")["ndcg@10"] == pytest.approx(result["test"]["ndcg@10"], abs=1e-6)
    bundle = export_bundle(tmp_path / "runs/killed", tmp_path / "bundle")
    assert len(Predictor(bundle).recommend(["Open", "Wall", "Door"], k=3).commands) == 3
