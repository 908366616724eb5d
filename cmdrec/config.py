"""Typed, frozen run configuration loaded from YAML, with `a.b=c` command-line overrides.

Unknown keys are errors (a typo never silently falls back to a default), and values are checked
against the dataclass field types when loaded.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cmdrec.errors import InputError

# ---------------------------------------------------------------- data side


@dataclass(frozen=True)
class SourceConfig:
    """Where the command log is and how to read it into the canonical event table."""

    format: Literal["events", "user_item"] = "events"
    path: str = "data/sample/events.csv"  # a file, a directory or a glob
    user_column: str = "user_id"
    command_column: str = "command"
    timestamp_column: str | None = "timestamp"  # None: row order defines event order
    timestamp_format: str | None = None  # strptime format; None: ISO 8601 or epoch numbers
    timestamp_unit: Literal["s", "ms", "us", "ns"] = "s"  # of epoch numbers
    session_column: str | None = None  # use given session ids instead of an inactivity gap
    metadata_columns: tuple[str, ...] = ()
    # values read as missing (an empty user or command is a bad row); the catalogue has the same list
    null_values: tuple[str, ...] = ("", "NULL", "NA", "NaN")
    strip_whitespace: bool = True  # " Wall" and "Wall " are "Wall"; the values changed are counted
    on_bad_rows: Literal["error", "skip"] = "error"


@dataclass(frozen=True)
class CatalogueConfig:
    """The command catalogue: command -> category, description and other metadata."""

    path: str | None = None
    command_column: str = "command"
    category_column: str | None = "category"
    description_column: str | None = "description"
    metadata_columns: tuple[str, ...] = ()
    null_values: tuple[str, ...] = ("", "NULL", "NA", "NaN")
    strip_whitespace: bool = True
    describe_from_name: bool = False  # no description column: build one from the command name
    on_unknown_commands: Literal["report", "error"] = "report"


@dataclass(frozen=True)
class UndoConfig:
    """Undo/redo reconstruction: an undo cancels the most recent not-yet-cancelled undoable command
    of its session and is removed itself; a redo restores the last one cancelled."""

    preset: str | None = None  # rules of a known application (see cmdrec.data.undo.UNDO_PRESETS)
    undo: tuple[str, ...] = ()  # the undo commands
    redo: tuple[str, ...] = ()
    undoable: tuple[str, ...] = ()  # commands or categories an undo can cancel; () = every command
    pattern: str | None = None  # a regex whose group 1 names the undone command ("Undo Event: (.+)")
    max_distance: int | None = None  # how far back (in events still kept) the undone command may be

    @property
    def enabled(self) -> bool:
        return bool(self.preset or self.undo or self.pattern)


@dataclass(frozen=True)
class RedundantConfig:
    """Commands that only accompany another (found by `cmdrec mine`, reviewed by a person): the first
    of each pair is dropped where the second is within `window` events in the session."""

    pairs: tuple[tuple[str, ...], ...] = ()  # [[accompanying, main], ...]
    window: int = 1

    def __post_init__(self):
        if any(len(pair) != 2 for pair in self.pairs):
            raise InputError("processing.redundant.pairs: each pair is [accompanying, main]")
        if self.window < 1:
            raise InputError("processing.redundant.window must be at least 1")


@dataclass(frozen=True)
class ProcessingConfig:
    session_gap_minutes: float = 30.0
    noise_preset: str | None = None
    noise_commands: tuple[str, ...] = ()
    redundant: RedundantConfig = field(default_factory=RedundantConfig)  # after the noise filter
    undo: UndoConfig = field(default_factory=UndoConfig)  # after the noise filter, before repeats
    collapse_repeats: bool = False
    min_session_length: int = 2
    max_session_length: int | None = None  # keep the most recent N events of longer sessions
    # logs larger than memory are processed in partitions of users: a number, or None for as many as
    # keep one partition within memory_budget_gb (estimated from the input files' sizes)
    partitions: int | None = None
    memory_budget_gb: float = 4.0
    engine: Literal["polars", "dask"] = "polars"  # dask: partitions as tasks on a Dask cluster
    dask_scheduler_address: str | None = None  # an existing cluster; None: a local one
    dask_workers: int = 2  # of the local cluster


@dataclass(frozen=True)
class SplitConfig:
    method: Literal["random_session", "time", "user", "leave_one_out"] = "random_session"
    valid_fraction: float = 0.05
    test_fraction: float = 0.15
    seed: int = 42
    # random_session: every command of at least two sessions also in train and in valid (sessions
    # moved to make it so are counted); needs each session's set of commands in memory
    balance_commands: bool = False


@dataclass(frozen=True)
class ChunkingConfig:
    min: int = 10
    max: int = 100

    def __post_init__(self):
        if not 2 <= self.min <= self.max:
            raise InputError(f"features.chunking: need 2 <= min <= max, got min {self.min}, max {self.max}")


@dataclass(frozen=True)
class FeatureConfig:
    min_command_count: int = 1  # commands seen fewer times in train map to the OOV id
    # "catalogue": every catalogue command gets an id (train frequency still orders them, unseen ones
    # last), as in the published Beauty protocol where all items are ranked; "train": train's commands only
    vocabulary: Literal["train", "catalogue"] = "train"
    min_category_count: int = 1
    categorical_columns: tuple[str, ...] = ("category",)
    continuous_columns: tuple[Literal["log_time_delta", "position", "hour", "weekday"], ...] = (
        "log_time_delta",
        "position",
        "hour",
        "weekday",
    )
    label_columns: tuple[str, ...] = ("category",)
    # commands whose events are removed from the training split (counted in the report): with
    # vocabulary "catalogue" they keep ids, which measures how well brand-new commands are ranked
    holdout_commands: tuple[str, ...] = ()
    chunking: ChunkingConfig | None = None  # cut train sessions into seeded random-length chunks


@dataclass(frozen=True)
class TextConfig:
    """Command texts -> embeddings (`cmdrec embed`)."""

    provider: Literal["sentence-transformers", "openai"] = "sentence-transformers"
    model: str | None = None  # None: all-MiniLM-L6-v2 (offline) / text-embedding-3-large (openai)
    base_url: str | None = None  # any OpenAI-compatible server
    batch_size: int = 64
    cache_dir: str | None = None  # None: `cache/text` beside the preprocessed directory
    augment: bool = False  # ask an LLM for a summary, classification and target of each command
    llm_model: str = "gpt-4o-mini"
    llm_base_url: str | None = None
    application: str = "a software application"
    documents: str | None = None  # the product's manual (Markdown/text): its nearest chunks go into the prompt
    documents_top_k: int = 3
    timeout_seconds: float = 60.0  # per request to a remote embedding or LLM server
    max_retry_seconds: float = 300.0  # all retries of one request together


@dataclass(frozen=True)
class DataConfig:
    name: str = "sample"
    source: SourceConfig = field(default_factory=SourceConfig)
    catalogue: CatalogueConfig = field(default_factory=CatalogueConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    text: TextConfig = field(default_factory=TextConfig)
    processed_dir: str = "outputs/sample/processed"
    preprocessed_dir: str = "outputs/sample/preprocessed"

    def __post_init__(self):
        split = self.split
        if not 0 <= split.valid_fraction < 1 or not 0 <= split.test_fraction < 1:
            raise InputError("split fractions must lie in [0, 1)")
        if split.balance_commands and split.method != "random_session":
            raise InputError("split.balance_commands needs split.method random_session")
        if split.valid_fraction + split.test_fraction >= 1:
            raise InputError("split.valid_fraction + split.test_fraction must be below 1")
        processing = self.processing
        if processing.min_session_length < 1:
            raise InputError("processing.min_session_length must be at least 1")
        if processing.max_session_length is not None and processing.max_session_length < 1:
            raise InputError("processing.max_session_length must be at least 1, or null to keep whole sessions")
        if processing.partitions is not None and processing.partitions < 1:
            raise InputError("processing.partitions must be at least 1, or null to size them by memory_budget_gb")
        if not processing.memory_budget_gb > 0:
            raise InputError("processing.memory_budget_gb must be above 0")
        if not processing.session_gap_minutes > 0:
            raise InputError(
                f"processing.session_gap_minutes must be above 0 (got {processing.session_gap_minutes:g}); "
                "to keep a user's whole history as one session, set a gap longer than the log"
            )
        for name in self.features.label_columns:
            if name not in self.features.categorical_columns:
                raise InputError(f"features.label_columns: '{name}' must also be in features.categorical_columns")


# ---------------------------------------------------------------- loading


def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and ill-typed values."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"allowed under '{where.rstrip('.') or cls.__name__}': {sorted(known)}"
        )
    values = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**values)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except InputError as error:
                errors.append(str(error))
        raise InputError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise InputError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any:
        return value
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise InputError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def to_dict(config) -> dict:
    """Plain mapping of a config (tuples as lists), suitable for YAML or JSON."""

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=c` overrides to a nested mapping; values are parsed as YAML scalars or lists."""
    data = _deep_copy(data)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise InputError(f"override '{override}' is not of the form key.sub=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override '{override}': '{part}' is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as error:
            reason = str(error).splitlines()[0]
            raise InputError(
                f"override '{override}': the value is not valid YAML ({reason}); quote it to pass it as text, "
                f"e.g. {key}='\"{raw}\"'"
            ) from None
    return data


def _deep_copy(data: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(data, dict):
        raise InputError(f"{path}: the top level must be a mapping")
    return data


def load_config(cls, path: str | Path | None = None, overrides: list[str] = ()):
    """Config `cls` from a YAML file (or defaults) with `a.b=c` overrides; errors name the file."""
    data = load_yaml(path) if path else {}
    try:
        return from_dict(cls, apply_overrides(data, list(overrides)))
    except InputError as error:
        if overrides and _valid(cls, data):  # the file alone is fine: the command line is at fault
            raise InputError(
                f"command-line override(s) {' '.join(overrides)} on {path or 'the defaults'}: {error}"
            ) from error
        raise InputError(f"{path or 'config'}: {error}") from error


def _valid(cls, data: dict) -> bool:
    try:
        from_dict(cls, data)
    except InputError:
        return False
    return True


def load_data_config(path: str | Path | None = None, overrides: list[str] = ()) -> DataConfig:
    return load_config(DataConfig, path, overrides)


# ---------------------------------------------------------------- model and training side


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
class ModelConfig:
    """Architecture; saved with every checkpoint so a resumed or evaluated run rebuilds it exactly."""

    backbone: str = "gpt2"  # see cmdrec.models.registry.COMPONENTS
    masking: Literal["clm", "mlm"] = "clm"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    max_length: int = 50
    mlm_probability: float = 0.2
    ffn_dim: int | None = (
        None  # each layer's feed-forward width; None = the backbone's own (4 x d_model; 2 x per Mixtral expert)
    )
    ffn_activation: Literal["gelu", "relu", "silu"] | None = (
        None  # None = the backbone's own (GELU; SiLU gates in Llama/Mixtral)
    )
    input_scaling: Literal["layernorm", "sqrt_d"] = "layernorm"  # fused inputs: LayerNorm, or SASRec's x sqrt(d_model)
    tie_weights: bool = False  # True shares the item embedding with the output layer (SASRec)
    output_bias: bool = True  # a learned per-command bias in the next-command output layer (SASRec has none)
    input_features: tuple[str, ...] = ()  # extra schema columns beside the item id; () = item id only
    fusion: str = "sum"  # how the input features of an event become one vector; see cmdrec.features.fusion
    aux_tasks: tuple[str, ...] = ()  # label columns predicted beside the next command, e.g. ("category",)
    text_embeddings: bool = False  # feed each command's text embedding (from `cmdrec embed`) as a feature
    text_output: bool = False  # score commands through their text embeddings only, so new commands can be ranked
    history_copy: bool = False  # mix in a pointer over the commands already in the window (RepeatNet); clm only
    n_experts: int = 4  # mixture-of-experts backbones only
    experts_per_token: int = 2
    # backbone "pretrained": a Llama-family decoder loaded from a local directory or hub id
    pretrained: str | None = None
    bit: int | str = 32  # 4 (QLoRA, NF4), 8, 16 (bf16), 32, or a dtype name
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    gradient_checkpointing: bool = False
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise InputError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        if self.max_length < 2:
            raise InputError("model.max_length must be at least 2")
        if self.ffn_dim is not None and self.ffn_dim < 1:
            raise InputError(f"model.ffn_dim must be positive, got {self.ffn_dim}")
        if self.bit not in BITS:
            raise InputError(f"model.bit: {self.bit!r} is not one of {list(BITS)}")
        if BITS[self.bit] in ("4bit", "8bit") and self.adapter.method == "none":
            raise InputError(
                "a quantised base (model.bit 4 or 8) cannot be trained fully; set model.adapter.method: lora"
            )


MONITOR = re.compile(r"loss|([a-z0-9_]+/)?(ndcg|recall|mrr)@\d+")


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
    # read the training split one shard at a time (a split larger than memory); its own seeded order
    streaming: bool = False
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
    name: Literal["cross_entropy", "focal"] = "cross_entropy"  # applied to every head
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
    session_events: int = 1_000  # events kept per live session
    session_ttl_seconds: float = 1_800.0
    max_sessions: int = 100_000
    admin_token_env: str = "CMDREC_ADMIN_TOKEN"  # environment variable holding the reload token

    def __post_init__(self):
        for name in ("max_history", "max_k", "max_batch_histories", "max_body_bytes", "batch_size", "queue_size",
                     "session_events", "max_sessions"):  # fmt: skip
            if getattr(self, name) < 1:
                raise InputError(f"serving.{name} must be at least 1, got {getattr(self, name)}")
        if self.session_events > self.max_history:
            raise InputError(
                f"serving.session_events ({self.session_events}) must not exceed max_history ({self.max_history}): "
                "a session would grow past what a request may carry"
            )


def load_run_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    return load_config(RunConfig, path, overrides)
