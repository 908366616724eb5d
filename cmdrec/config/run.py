"""The model, training, loss and evaluation of a run (`cmdrec train`), and the service (`cmdrec serve`)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cmdrec.config.loading import load_config
from cmdrec.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterConfig:
    """LoRA adapters (through peft) on a pretrained decoder; "none" trains the decoder fully."""

    method: Literal["none", "lora"] = "none"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


BITS = {
    4: "4bit",
    8: "8bit",
    16: "bf16",
    32: "fp32",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp32": "fp32",
    "float32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
}


@dataclass(frozen=True)
class LayersConfig:
    """The layers of every backbone cmdrec builds itself (all but `pretrained`)."""

    n_layers: int = 2
    n_heads: int = 2  # attention heads (GRU has none)
    # each layer's feed-forward width; None: the backbone's own (4 x d_model; 2 x d_model per expert)
    ffn_dim: int | None = None
    ffn_activation: Literal["gelu", "relu", "silu"] | None = None  # None: the backbone's own (GELU; SiLU in Llama)

    def __post_init__(self):
        if self.n_layers < 1 or self.n_heads < 1:
            raise InputError("model.layers.n_layers and n_heads must be at least 1")
        if self.ffn_dim is not None and self.ffn_dim < 1:
            raise InputError(f"model.layers.ffn_dim must be positive, got {self.ffn_dim}")


@dataclass(frozen=True)
class ExpertsConfig:
    """The mixture of experts of a backbone that has one (mixtral)."""

    n_experts: int = 4
    experts_per_token: int = 2

    def __post_init__(self):
        if not 1 <= self.experts_per_token <= self.n_experts:
            raise InputError(
                f"model.experts.experts_per_token ({self.experts_per_token}) must lie in 1..{self.n_experts}"
            )


@dataclass(frozen=True)
class PretrainedConfig:
    """The decoder that backbone `pretrained` wraps: a Llama-family model from a local directory or hub id."""

    path: str | None = None  # required
    bit: int | str = 32  # 4 (QLoRA, NF4), 8, 16 (bf16), 32, or a dtype name
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    gradient_checkpointing: bool = False
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def __post_init__(self):
        if self.bit not in BITS:
            raise InputError(f"model.pretrained.bit: {self.bit!r} is not one of {list(BITS)}")
        if BITS[self.bit] in ("4bit", "8bit") and self.adapter.method == "none":
            raise InputError(
                "a quantised base (model.pretrained.bit 4 or 8) cannot be trained fully; set "
                "model.pretrained.adapter.method: lora"
            )


# the sections a backbone may have; which ones it has is recorded in cmdrec.models.registry
MODEL_SECTIONS = ("layers", "experts", "pretrained")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; saved with every checkpoint so a resumed or evaluated run rebuilds it exactly.
    The settings every model shares, then one section per kind of backbone; a resolved config (what a
    run saves) holds exactly the sections its backbone has."""

    backbone: str = "gpt2"  # see cmdrec.models.registry.COMPONENTS
    masking: Literal["clm", "mlm"] = "clm"
    d_model: int = 64
    dropout: float = 0.1
    # events the model reads; its training windows are one longer under clm (the predicted event)
    max_length: int = 50
    # rows of the position table; None: the window length (max_length + 1 under clm, as runs before
    # format 3 were built, so their checkpoints and the committed results stay identical)
    positions: int | None = None
    mlm_probability: float = 0.2
    input_scaling: Literal["layernorm", "sqrt_d"] = "layernorm"  # fused inputs: LayerNorm, or SASRec's x sqrt(d_model)
    tie_weights: bool = False  # True shares the item embedding with the output layer (SASRec)
    output_bias: bool = True  # a learned per-command bias in the next-command output layer (SASRec has none)
    input_features: tuple[str, ...] = ()  # extra schema columns beside the item id; () = item id only
    fusion: str = "sum"  # how the input features of an event become one vector; see cmdrec.features.fusion
    fusion_heads: int | None = None  # heads of attention fusion; None: layers.n_heads, or 2 without layers
    aux_tasks: tuple[str, ...] = ()  # label columns predicted beside the next command, e.g. ("category",)
    text_embeddings: bool = False  # feed each command's text embedding (from `cmdrec embed`) as a feature
    text_output: bool = False  # score commands through their text embeddings only, so new commands can be ranked
    history_copy: bool = False  # mix in a pointer over the commands already in the window (RepeatNet); clm only
    layers: LayersConfig | None = None  # None: the defaults, for a backbone that has layers
    experts: ExpertsConfig | None = None  # mixture-of-experts backbones
    pretrained: PretrainedConfig | None = None  # backbone "pretrained"

    def __post_init__(self):
        if self.max_length < (1 if self.masking == "clm" else 2):
            raise InputError("model.max_length must be at least 1 (2 under mlm, whose last event is the mask)")
        if self.positions is not None and self.positions < self.window_length:
            raise InputError(f"model.positions ({self.positions}) must hold a window of {self.window_length} events")
        if self.layers is not None and self.d_model % self.layers.n_heads:
            raise InputError(
                f"model.d_model ({self.d_model}) must be divisible by model.layers.n_heads ({self.layers.n_heads})"
            )

    @property
    def window_length(self) -> int:
        """Events of a data window: what the model reads, plus under clm the predicted event (its
        targets are its inputs shifted by one); mlm predicts masked events in place."""
        return self.max_length + 1 if self.masking == "clm" else self.max_length

    @property
    def history_length(self) -> int:
        """Events of a live history the model reads to suggest the next: mlm appends the mask event."""
        return self.max_length if self.masking == "clm" else self.max_length - 1

    @property
    def position_table(self) -> int:
        return self.positions or self.window_length

    @property
    def attention_heads(self) -> int:
        """Heads of attention fusion."""
        return self.fusion_heads or (self.layers.n_heads if self.layers else 2)

    @classmethod
    def upgrade(cls, data: dict, where: str) -> dict:
        return sectioned(data, where)


# keys of the flat model config (run format 2 and before) -> (section, key)
FLAT_KEYS = {
    **{key: ("layers", key) for key in ("n_layers", "n_heads", "ffn_dim", "ffn_activation")},
    **{key: ("experts", key) for key in ("n_experts", "experts_per_token")},
    "pretrained": ("pretrained", "path"),
    **{key: ("pretrained", key) for key in ("bit", "attn_implementation", "gradient_checkpointing", "adapter")},
}
_warned = False


def sectioned(data: dict, where: str = "model.") -> dict:
    """A model mapping with the flat keys of earlier formats moved into their sections (`model.n_layers`
    is `model.layers.n_layers`), so old configs and `model.n_layers=4` overrides keep working."""
    global _warned
    if not isinstance(data, dict):
        return data
    # `pretrained` is the section itself when it is a mapping, and says nothing when null
    flat = [k for k in FLAT_KEYS if k in data and not (k == "pretrained" and not isinstance(data[k], str))]
    if not flat:
        return data
    data = dict(data)
    for key in flat:
        section, name = FLAT_KEYS[key]
        value = data.pop(key)
        target = data.get(section) or {}
        if not isinstance(target, dict):
            raise InputError(f"{where}{section}: expected a section, got {target!r}")
        if name in target and target[name] != value:
            raise InputError(
                f"{where}{key} ({value!r}) and {where}{section}.{name} ({target[name]!r}) both given; "
                f"keep {where}{section}.{name}"
            )
        data[section] = {**target, name: value}
    if data.get("pretrained") is None:
        data.pop("pretrained", None)
    if not _warned:
        _warned = True
        log.info("model config: %s read as %s (the spelling before model sections)", ", ".join(flat),
                 ", ".join(".".join(FLAT_KEYS[k]) for k in flat))  # fmt: skip
    return data


MONITOR = re.compile(r"loss|([a-z0-9_]+/)?(ndcg|recall|mrr)@\d+")


@dataclass(frozen=True)
class FsdpConfig:
    """Fully sharded data parallel (torch's fully_shard) across the ranks of a distributed run."""

    enabled: bool = False
    cpu_offload: bool = False  # parameters, gradients and optimizer state in CPU memory between uses (GPU only)
    # transformer_block: shard each block of the backbone; size_based: each module of min_num_params or more
    wrap_policy: Literal["transformer_block", "size_based"] = "transformer_block"
    min_num_params: int = 1_000_000
    reshard_after_forward: bool = True  # free the gathered parameters after forward (less memory, more traffic)
    # each rank writes its own shards (torch.distributed.checkpoint) instead of rank 0 the gathered whole;
    # the ranks must share the run directory's filesystem
    sharded_checkpoints: bool = False


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    warmup_ratio: float = 0.1  # warm-up is at most this share of all optimizer steps
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"  # after warm-up
    min_lr_ratio: float = 0.0
    grad_accumulation: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else off
    ema_decay: float | None = None
    early_stopping_patience: int | None = 3  # validations without improvement
    monitor: str = "ndcg@10"  # a validation metric (`ndcg@10`, `category/recall@3`) or `loss` (lower is better)
    checkpoint_every_steps: int | None = None  # None: at the end of each epoch only
    keep_checkpoints: int = 2
    seed: int = 42
    device: str = "auto"  # one device; with `devices`, the kind ("cuda") each rank's GPU is
    devices: tuple[int, ...] = ()  # GPU indices: more than one trains data-parallel, one process per GPU
    num_threads: int | None = None
    deterministic: bool = False  # torch's deterministic algorithms (slower on a GPU; CPU kernels already are)
    # dropout masks from random bytes, the rate rounded to 1/256: several times cheaper than torch's on a CPU
    fast_dropout: bool = False
    # read the training split one shard at a time (a split larger than memory); its own seeded order
    streaming: bool = False
    fsdp: FsdpConfig = field(default_factory=FsdpConfig)
    wandb_project: str | None = None

    def __post_init__(self):
        if not 0 <= self.warmup_ratio <= 1:
            raise InputError(f"training.warmup_ratio must lie in [0, 1], got {self.warmup_ratio}")
        if not MONITOR.fullmatch(self.monitor):
            raise InputError(
                f"training.monitor: {self.monitor!r} is no validation metric; use loss or a ranking metric such as "
                "ndcg@10, recall@3, mrr@5 (prefixed 'category/' for an auxiliary task)"
            )

    @property
    def monitor_higher_is_better(self) -> bool:
        return not self.monitor.endswith("loss")


@dataclass(frozen=True)
class LossConfig:
    name: str = "cross_entropy"  # cross_entropy, focal, or one registered with cmdrec.losses.register_loss; every head
    focal_gamma: float = 2.0
    aux_weight: float = 0.5  # weight of each auxiliary task's loss
    moe_balance: float = 0.01  # coefficient of the router load-balancing loss (MoE backbones)


@dataclass(frozen=True)
class EvalConfig:
    positions: Literal["last", "all"] = "last"
    exclude_seen: bool = False  # rank only unseen items (the Beauty protocol; wrong for commands)
    ks: tuple[int, ...] = (3, 5, 10)
    batch_size: int = 256


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    data_dir: str = "outputs/sample/preprocessed"
    runs_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        at = self.training.monitor.rpartition("@")[2]
        if at.isdigit() and int(at) not in self.eval.ks:
            raise InputError(f"training.monitor {self.training.monitor!r}: eval.ks {list(self.eval.ks)} lacks {at}")


@dataclass(frozen=True)
class ServingConfig:
    """`cmdrec serve`: limits of a request, dynamic batching and live sessions."""

    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"
    num_threads: int | None = None  # torch threads for the forward pass; None: torch's default
    max_history: int = 10_000  # events in one request's history
    max_k: int = 1_000
    max_batch_histories: int = 1_000  # histories in one /v1/recommend/batch call
    max_body_bytes: int = 4 * 1024 * 1024
    batch_size: int = 64  # most histories in one forward pass
    batch_wait_ms: float = 0.0  # extra wait for more requests; 0: a batch is what queued while the model ran
    queue_size: int = 2_048  # histories waiting to be scored; beyond it requests get 503
    model_workers: int = 1  # batches scored at once, each in its own thread (with num_threads=1: one core each)
    session_events: int = 1_000  # events kept per live session
    session_ttl_seconds: float = 1_800.0
    max_sessions: int = 100_000
    admin_token_env: str = "CMDREC_ADMIN_TOKEN"  # environment variable holding the reload token

    def __post_init__(self):
        for name in ("max_history", "max_k", "max_batch_histories", "max_body_bytes", "batch_size", "queue_size",
                     "session_events", "max_sessions", "model_workers"):  # fmt: skip
            if getattr(self, name) < 1:
                raise InputError(f"serving.{name} must be at least 1, got {getattr(self, name)}")
        if self.session_events > self.max_history:
            raise InputError(
                f"serving.session_events ({self.session_events}) must not exceed max_history ({self.max_history}): "
                "a session would grow past what a request may carry"
            )


def current_spelling(overrides: list[str]) -> list[str]:
    """Overrides of flat model keys (`model.n_layers=1`, `model.pretrained=DIR`) as today's section keys,
    so they set what a sectioned config file holds instead of conflicting with it."""
    renamed = []
    for override in overrides:
        key, sep, value = override.partition("=")
        head, _, rest = key.removeprefix("model.").partition(".")
        if key.startswith("model.") and head in FLAT_KEYS and not (head == "pretrained" and rest):
            section, name = FLAT_KEYS[head]
            key = ".".join(["model", section, name, *([rest] if rest else [])])
        renamed.append(f"{key}{sep}{value}")
    return renamed


def load_run_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    def upgraded(data: dict) -> dict:
        return {**data, "model": sectioned(data["model"])} if isinstance(data.get("model"), dict) else data

    return load_config(RunConfig, path, current_spelling(list(overrides)), upgraded)
