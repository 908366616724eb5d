"""Configs as earlier versions of cmdrec wrote them into runs, checkpoints and bundles -> today's.

Config format 3 (this one) gives the model config one section per kind of backbone and makes
`model.max_length` the number of events the model reads. Formats 1 and 2 wrote a flat model config
with every key, whose `max_length` counted the predicted event too. A config is migrated on read,
so a run or bundle written before keeps loading and predicts exactly as it did (tested on fixtures
written by format 2: tests/artifacts/test_migration.py)."""

from __future__ import annotations

from cmdrec.config.run import FLAT_KEYS, sectioned
from cmdrec.models.registry import component

CONFIG_FORMAT_VERSION = 3


def written_flat(model: dict) -> bool:
    """Whether a model config was written before sections: every such dump holds every flat key."""
    return "n_layers" in model and "n_experts" in model


def migrate_run_config(data: dict, version: int) -> dict:
    """A run config (the mapping of config.yaml) written in config format `version` -> today's."""
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        return data
    return {**data, "model": migrate_model_config(data["model"], version)}


def migrate_model_config(model: dict, version: int) -> dict:
    if version >= CONFIG_FORMAT_VERSION or not written_flat(model):
        return model
    spec = component(model.get("backbone", "gpt2"))
    heads = model.get("n_heads")
    migrated = sectioned({k: v for k, v in model.items() if not (k in FLAT_KEYS and _unused(k, spec))})
    if "layers" not in spec.sections and migrated.get("fusion") == "attention" and heads:
        migrated["fusion_heads"] = heads  # attention fusion read model.n_heads
    length = model.get("max_length", 50)
    clm = model.get("masking", "clm") == "clm"
    migrated["max_length"] = length - 1 if clm else length  # it counted the predicted event
    migrated["positions"] = length  # the position table had max_length rows
    return migrated


def _unused(key: str, spec) -> bool:
    """A flat key of a section the backbone does not have: every flat dump wrote them all."""
    return FLAT_KEYS[key][0] not in spec.sections


def stored_model_version(model: dict) -> int:
    """The config format of a checkpoint's model config, which carries no version of its own."""
    return 2 if written_flat(model) else CONFIG_FORMAT_VERSION
