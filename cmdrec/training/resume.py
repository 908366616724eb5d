"""What a resumed run may change: settings that do not alter what it has learned so far; anything
else is refused, naming the settings and the way out."""

from __future__ import annotations

import dataclasses
import logging

from cmdrec.artifacts.checkpoint import read_model_config
from cmdrec.artifacts.runs import RunDir
from cmdrec.config import ModelConfig, RunConfig, from_dict, to_dict
from cmdrec.errors import InputError

log = logging.getLogger(__name__)

# settings a resumed run may change: none alters what it has learned so far
RESUMABLE_CHANGES = (
    "name",
    "runs_dir",
    "data_dir",
    "training.epochs",
    "training.early_stopping_patience",
    "training.checkpoint_every_steps",
    "training.keep_checkpoints",
    "training.num_threads",
    "training.wandb_project",
    "training.device",
    "training.devices",
    "eval.",
)


def resumed_config(config: RunConfig, run: RunDir, resume_from) -> RunConfig:
    saved = run.read_config() or {}
    changed = [
        f"{key} {old!r} -> {new!r}"
        for key, (old, new) in _differences(saved, to_dict(config)).items()
        if not any(
            key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUMABLE_CHANGES
        )
    ]
    if saved and changed:
        raise InputError(
            f"run {run.path} exists and was trained with other settings ({'; '.join(changed)}); train these under "
            "another name, or pass --restart to train this run again from the start"
        )
    # the architecture comes from the checkpoint, never from a possibly edited config
    log.info("resuming %s from %s", run.path, resume_from)
    return dataclasses.replace(config, model=from_dict(ModelConfig, read_model_config(resume_from)))


def _differences(saved: dict, current: dict, prefix: str = "") -> dict[str, tuple]:
    differences = {}
    for key in saved:  # a setting newer than the run has its default, which the run was trained with
        old, new = saved[key], current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences |= _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences[f"{prefix}{key}"] = (old, new)
    return differences
