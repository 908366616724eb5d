"""Typed, frozen configuration loaded from YAML, with `a.b=c` command-line overrides; `cmdrec.config` is
the one import path for every config class and loader."""

from cmdrec.config.data import (
    CatalogueConfig,
    ChunkingConfig,
    DataConfig,
    FeatureConfig,
    ProcessingConfig,
    RedundantConfig,
    SourceConfig,
    SplitConfig,
    TextConfig,
    UndoConfig,
    load_data_config,
)
from cmdrec.config.loading import apply_overrides, from_dict, load_config, load_yaml, to_dict
from cmdrec.config.run import (
    BITS,
    AdapterConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    ServingConfig,
    TrainingConfig,
    load_run_config,
)

__all__ = [
    "BITS",
    "AdapterConfig",
    "CatalogueConfig",
    "ChunkingConfig",
    "DataConfig",
    "EvalConfig",
    "FeatureConfig",
    "LossConfig",
    "ModelConfig",
    "ProcessingConfig",
    "RedundantConfig",
    "RunConfig",
    "ServingConfig",
    "SourceConfig",
    "SplitConfig",
    "TextConfig",
    "TrainingConfig",
    "UndoConfig",
    "apply_overrides",
    "from_dict",
    "load_config",
    "load_data_config",
    "load_run_config",
    "load_yaml",
    "to_dict",
]
