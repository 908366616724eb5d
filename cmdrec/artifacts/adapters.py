"""Loading pretrained decoders for the `pretrained` backbone: full precision, bf16, or quantised
with bitsandbytes (QLoRA: 4-bit NF4, double quantisation), optionally wrapped in peft LoRA
adapters. Also the merged export. peft and bitsandbytes are imported only here, when used."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from cmdrec.config import BITS, ModelConfig
from cmdrec.errors import InputError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_training_machine(config: ModelConfig, device: torch.device) -> None:
    """Refuse, before training starts, a 16-bit base on a CPU: it would train, but slowly. A run
    trained on a GPU in 16 bits still loads on a CPU (`load_base` widens its weights to float32)."""
    if config.pretrained is not None and BITS[config.pretrained.bit] in ("bf16", "fp16") and device.type != "cuda":
        raise InputError(
            f"model.pretrained.bit={config.pretrained.bit!r} (16-bit weights) is fast only on a GPU; on a CPU use "
            "bit: 32, or bit: 4 for QLoRA"
        )


def check_machine(config: ModelConfig, device: torch.device) -> None:
    """Refuse, before any loading, the modes this machine cannot run."""
    if config.pretrained is None:
        return
    if config.pretrained.attn_implementation == "flash_attention_2" and device.type != "cuda":
        raise InputError(
            "model.pretrained.attn_implementation=flash_attention_2 needs a CUDA GPU (and the flash-attn package); use "
            "sdpa or eager here"
        )
    if config.pretrained.attn_implementation == "flash_attention_2":
        try:
            import flash_attn  # noqa: F401
        except ImportError as error:
            raise InputError(
                "model.pretrained.attn_implementation=flash_attention_2 needs the flash-attn package"
            ) from error


def _peft():
    try:
        import peft
    except ImportError as error:
        raise InputError("LoRA adapters need peft: pip install 'cmdrec[llm]'") from error
    return peft


def load_decoder(config: ModelConfig, device: torch.device) -> nn.Module:
    """The pretrained decoder as configured: dtype or quantisation, checkpointing, LoRA adapters."""
    return wrap_adapter(load_base(config, device), config)


def load_base(config: ModelConfig, device: torch.device, bit: int | str | None = None) -> nn.Module:
    """The frozen base alone, in `bit` (default: the configured one)."""
    from transformers import AutoModel

    check_machine(config, device)
    kind = BITS[config.pretrained.bit if bit is None else bit]
    if kind in ("bf16", "fp16") and device.type != "cuda":
        kind = "fp32"  # 16-bit weights are exact in float32, which a CPU computes faster
    kwargs = {"attn_implementation": config.pretrained.attn_implementation}
    if kind in ("4bit", "8bit"):
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as error:
            raise InputError(
                "quantised bases (model.pretrained.bit 4 or 8) need bitsandbytes: pip install 'cmdrec[llm]'"
            ) from error
        compute = torch.bfloat16 if device.type == "cuda" else torch.float32
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
            if kind == "4bit"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        kwargs["device_map"] = {"": str(device)}
    else:
        kwargs["dtype"] = DTYPES[kind]
    try:
        decoder = AutoModel.from_pretrained(config.pretrained.path, **kwargs)
    except OSError as error:
        raise InputError(f"model.pretrained.path: cannot load {config.pretrained.path!r}: {error}") from error
    if kind in ("4bit", "8bit"):
        decoder = _peft().prepare_model_for_kbit_training(
            decoder, use_gradient_checkpointing=config.pretrained.gradient_checkpointing
        )
    elif config.pretrained.gradient_checkpointing:
        decoder.gradient_checkpointing_enable()
    return decoder


def wrap_adapter(decoder: nn.Module, config: ModelConfig) -> nn.Module:
    if config.pretrained.adapter.method == "none":
        return decoder
    peft = _peft()
    adapter = config.pretrained.adapter
    lora = peft.LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=list(adapter.target_modules),
        bias="none",
    )
    return peft.get_peft_model(decoder, lora)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What an adapter checkpoint holds: every trainable parameter (adapters, input block,
    projections, heads); the frozen base is re-read from `model.pretrained.path`."""
    return {name: p.detach().clone().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def export_merged(model: nn.Module, config: ModelConfig, directory: str | Path) -> ModelConfig:
    """Merge LoRA into a full-precision copy of the base the adapters were trained on (a 4-bit base
    is dequantised first, so the merged model computes what training saw) and save it as a plain
    decoder. Returns the model config that loads the export: bit 32, no adapter."""
    directory = Path(directory)
    kind = BITS[config.pretrained.bit]
    if kind == "8bit":
        raise InputError(
            "merged export of 8-bit runs is not supported; export from a 4-bit (QLoRA) or full-precision LoRA run"
        )
    cpu = torch.device("cpu")
    base = load_base(config, cpu).dequantize().float() if kind == "4bit" else load_base(config, cpu, bit=32)
    merged = wrap_adapter(base, config)
    adapter_state = {
        k.removeprefix("backbone.decoder."): v
        for k, v in trainable_state(model).items()
        if k.startswith("backbone.decoder.")
    }
    missing = set(adapter_state) - {name for name, _ in merged.named_parameters()}
    if missing:
        raise InputError(f"cannot export: adapter weights {sorted(missing)[:3]} have no place in the base")
    merged.load_state_dict(adapter_state, strict=False)
    merged.merge_and_unload().save_pretrained(directory / "decoder")
    section = config.pretrained
    adapter = dataclasses.replace(section.adapter, method="none")
    return dataclasses.replace(
        config, pretrained=dataclasses.replace(section, path=str(directory / "decoder"), bit=32, adapter=adapter)
    )
