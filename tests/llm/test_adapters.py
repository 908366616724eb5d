"""Pretrained Llama backbones with LoRA and 4-bit QLoRA, on a tiny random Llama saved to a temp
directory (no network). GPU-only modes are refused on CPU, and tested on the GPU machine."""

import dataclasses
import importlib.util

import pytest
import torch

from cmdrec.artifacts.bundle import export_bundle, load_bundle
from cmdrec.artifacts.checkpoint import list_checkpoints
from cmdrec.artifacts.loading import load_trained
from cmdrec.data.masking import clm
from cmdrec.data.sequences import SequenceData
from cmdrec.errors import InputError
from cmdrec.training.evaluate import evaluate_model, evaluate_run
from cmdrec.training.loop import train
from tests.conftest import tiny_run

pytest.importorskip("peft")
METRICS = [f"{m}@{k}" for k in (3, 5, 10) for m in ("ndcg", "recall", "mrr")]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("llama") / "tiny-llama"
    LlamaModel(
        LlamaConfig(
            vocab_size=32,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
    ).save_pretrained(path)
    return str(path)


def llama_run(tiny_data, tmp_path, name, tiny_llama, bit, **adapter):
    return tiny_run(
        tiny_data,
        tmp_path,
        name,
        model={
            "backbone": "pretrained",
            "pretrained": tiny_llama,
            "bit": bit,
            "attn_implementation": "eager",
            "adapter": {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0, **adapter},
        },
        training={"epochs": 1, "learning_rate": 3e-3},
    )


def logits_of(model, tiny_data):
    batch = SequenceData.load(tiny_data, "test", [], 12, "eval").batch(torch.arange(6).numpy())
    with torch.no_grad():
        return model(clm(batch, ["command"], positions="last")).logits["command"]


@pytest.mark.parametrize("bit", [32, 4], ids=["lora", "qlora-4bit"])
def test_adapter_run_trains_saves_small_checkpoints_reloads_and_exports(tiny_data, tmp_path, tiny_llama, bit):
    from safetensors import safe_open

    config = llama_run(tiny_data, tmp_path, f"llama-{bit}", tiny_llama, bit)
    result = train(config, show_progress=False)
    assert 0 < result["test"]["ndcg@10"] <= 1
    run_dir = tmp_path / f"llama-{bit}"
    weights = list_checkpoints(run_dir / "checkpoints")[-1] / "model.safetensors"
    with safe_open(str(weights), "pt") as handle:
        names = list(handle.keys())
    assert any("lora_A" in n for n in names) and not any("base_layer" in n for n in names)  # adapter-only
    # reloading the adapter checkpoint reproduces the run's metrics
    again = evaluate_run(run_dir)
    assert all(again[m] == pytest.approx(result["test"][m]) for m in METRICS)
    # the merged full-precision export predicts the same
    adapted, _ = load_trained(run_dir)
    export_dir = export_bundle(run_dir, tmp_path / f"export-{bit}")
    exported, _ = load_bundle(export_dir)
    assert torch.allclose(logits_of(adapted, tiny_data), logits_of(exported, tiny_data), atol=1e-3, rtol=1e-3)
    from cmdrec.cli import main

    assert main(["evaluate", str(export_dir), "--data", str(tiny_data)]) == 0  # a bundle evaluates like a run
    from cmdrec.serving import Predictor

    assert len(Predictor(export_dir).recommend(["Wall", "Door"], k=3).commands) == 3  # and serves


def test_quantised_base_cannot_be_fully_fine_tuned(tiny_data, tmp_path, tiny_llama):
    with pytest.raises(InputError, match="adapter.method: lora"):
        tiny_run(tiny_data, tmp_path, "x", model={"backbone": "pretrained", "pretrained": tiny_llama, "bit": 4})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
@pytest.mark.parametrize(
    "model,message",
    [
        ({"attn_implementation": "flash_attention_2"}, "flash_attention_2 needs a CUDA GPU"),
        ({"bit": 16}, "fast only on a GPU"),
    ],
)
def test_gpu_only_modes_fail_at_start_on_cpu(tiny_data, tmp_path, tiny_llama, model, message):
    config = tiny_run(
        tiny_data,
        tmp_path,
        "gpu-only",
        model={"backbone": "pretrained", "pretrained": tiny_llama, "adapter": {"method": "lora"}, **model},
    )
    with pytest.raises(InputError, match=message):
        train(config, show_progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_qlora_bf16_compute_and_sdpa_on_gpu(tiny_data, tmp_path, tiny_llama):
    config = tiny_run(
        tiny_data,
        tmp_path,
        "gpu-qlora",
        model={"backbone": "pretrained", "pretrained": tiny_llama, "bit": 4, "adapter": {"method": "lora", "r": 4}},
        training={"epochs": 1, "device": "cuda"},
    )
    assert 0 < train(config, show_progress=False)["test"]["ndcg@10"] <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_lora_on_a_bf16_base_on_gpu_exports_a_model_that_evaluates_alike_on_cpu(tiny_data, tmp_path, tiny_llama):
    config = tiny_run(
        tiny_data,
        tmp_path,
        "gpu-lora-bf16",
        model={"backbone": "pretrained", "pretrained": tiny_llama, "bit": 16, "adapter": {"method": "lora", "r": 4}},
        training={"epochs": 1, "device": "cuda"},
    )
    result = train(config, show_progress=False)
    assert 0 < result["test"]["ndcg@10"] <= 1
    export_dir = export_bundle(tmp_path / "gpu-lora-bf16", tmp_path / "gpu-export")
    model, bundle_config = load_bundle(export_dir)
    on_data = dataclasses.replace(bundle_config, data_dir=str(tiny_data))
    assert evaluate_model(model, on_data)["ndcg@10"] == pytest.approx(result["test"]["ndcg@10"], abs=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="checks the refusal without flash-attn")
def test_flash_attention_without_its_package_is_refused_at_start_on_gpu(tiny_data, tmp_path, tiny_llama):
    config = tiny_run(
        tiny_data,
        tmp_path,
        "gpu-flash",
        model={
            "backbone": "pretrained",
            "pretrained": tiny_llama,
            "bit": 16,
            "attn_implementation": "flash_attention_2",
            "adapter": {"method": "lora"},
        },
        training={"device": "cuda"},
    )
    with pytest.raises(InputError, match="needs the flash-attn package"):
        train(config, show_progress=False)


def test_a_16_bit_base_loads_on_cpu_widened_to_float32(tiny_llama):
    """A run trained on a GPU with bit 16 still evaluates, serves and exports on a CPU."""
    from cmdrec.artifacts.adapters import load_base
    from cmdrec.config import ModelConfig, from_dict

    config = from_dict(ModelConfig, {"backbone": "pretrained", "pretrained": tiny_llama, "bit": 16})
    assert next(load_base(config, torch.device("cpu")).parameters()).dtype == torch.float32
