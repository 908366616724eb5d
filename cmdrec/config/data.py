"""The data side: sources, catalogue, processing, split, features and text (`cmdrec process/preprocess/embed`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cmdrec.config.loading import load_config
from cmdrec.errors import InputError


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
class WorkflowsConfig:
    """Workflow tokens: byte-pair merges of consecutive commands learned on the training split."""

    merges: int = 200  # composite tokens to learn at most
    min_count: int = 20  # a pair merges only when it occurs this often in the training split

    def __post_init__(self):
        if self.merges < 1 or self.min_count < 2:
            raise InputError("features.workflows: merges must be at least 1 and min_count at least 2")


@dataclass(frozen=True)
class FeatureConfig:
    min_command_count: int = 1  # commands seen fewer times in train map to the OOV id
    # "catalogue": every catalogue command gets an id (train frequency still orders them, unseen ones
    # last), as in the published Beauty protocol where all items are ranked; "train": train's commands only
    vocabulary: Literal["train", "catalogue"] = "train"
    min_category_count: int = 1
    categorical_columns: tuple[str, ...] = ("category",)
    # features derived from each session's events: log_time_delta, position, hour, weekday, or one
    # registered with cmdrec.data.derived.register_feature
    continuous_columns: tuple[str, ...] = (
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
    # merge frequent runs of commands into workflow tokens (next-command evaluation is unchanged)
    workflows: WorkflowsConfig | None = None


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


def load_data_config(path: str | Path | None = None, overrides: list[str] = ()) -> DataConfig:
    return load_config(DataConfig, path, overrides)
