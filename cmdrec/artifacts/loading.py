"""Loading a trained model back: from a run directory (its best checkpoint) or from a bundle.

A run records where its data is, relative to the run directory and absolute (`run.json`), so a run
moved together with its data, or used from any working directory, still finds it. Runs written
before that record existed fall back to the config's `data_dir` as given."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cmdrec.artifacts.adapters import load_decoder
from cmdrec.artifacts.checkpoint import (
    EMA_WEIGHTS,
    METRICS,
    TRAINER_STATE,
    WEIGHTS,
    load_weights,
    read_model_config,
    verify_checkpoint,
)
from cmdrec.artifacts.migrate import CONFIG_FORMAT_VERSION
from cmdrec.artifacts.runs import RUN_RECORD, RunDir
from cmdrec.config import ModelConfig, RunConfig, from_dict
from cmdrec.data.dataset import SCHEMA_FILE, PreparedDataset
from cmdrec.data.sequences import SequenceData, load_schema
from cmdrec.errors import InputError
from cmdrec.io import read_json, write_json_atomic
from cmdrec.models.build import build_baseline, build_model, data_columns
from cmdrec.models.registry import component

log = logging.getLogger(__name__)
RESULTS = "results.json"
# 1: runs before run.json existed (data_dir relative to the working directory); 2: run.json; 3: config format 3
RUN_FORMAT_VERSION = CONFIG_FORMAT_VERSION
BASELINE_STATE = "baseline.safetensors"


def is_adapter_run(model_config: ModelConfig) -> bool:
    return model_config.pretrained is not None and model_config.pretrained.adapter.method != "none"


def load_pretrained(model_config: ModelConfig, device: torch.device):
    """The pretrained decoder of a backbone that wraps one (quantised / with adapters as configured)."""
    return load_decoder(model_config, device) if component(model_config.backbone).pretrained_weights else None


def load_text_table(data_dir: str | Path, model_config: ModelConfig) -> torch.Tensor | None:
    """The dataset's command text embeddings (written by `cmdrec embed`), when the model uses them."""
    if not (model_config.text_embeddings or model_config.text_output):
        return None
    path = PreparedDataset(data_dir).text_embeddings_path
    if not path.is_file():
        raise InputError(
            f"model.text_embeddings / text_output is set but {path} does not exist; run `cmdrec embed` first"
        )
    return load_file(str(path))["embeddings"]


def build_neural(model_config: ModelConfig, schema, data_dir: str | Path, device: torch.device) -> torch.nn.Module:
    """A neural model with the resources it reads from files: the text table and the pretrained decoder."""
    return build_model(
        model_config, schema, load_text_table(data_dir, model_config), load_pretrained(model_config, device)
    )


def read_valid(checkpoint_path: Path) -> dict:
    return read_json(checkpoint_path / METRICS)


# ---------------------------------------------------------------- run directories


def record_data_dir(run: RunDir, data_dir: str | Path) -> None:
    absolute = Path(data_dir).resolve()
    write_json_atomic(
        run.path / RUN_RECORD,
        {
            "format_version": RUN_FORMAT_VERSION,
            "data_dir": {"relative_to_run": os.path.relpath(absolute, run.path.resolve()), "absolute": str(absolute)},
        },
    )


def resolve_data_dir(run_dir: Path, config: RunConfig) -> Path:
    """The run's data directory: relative to the run, else absolute, else as the config gives it."""
    record_path = run_dir / RUN_RECORD
    candidates = []
    if record_path.is_file():
        recorded = read_json(record_path)["data_dir"]
        candidates += [run_dir / recorded["relative_to_run"], Path(recorded["absolute"])]
    candidates.append(Path(config.data_dir))
    for candidate in candidates:
        if PreparedDataset(candidate).exists():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise InputError(f"{run_dir}: its data directory is not found (no {SCHEMA_FILE} at {tried}); move it with the run")


def read_run_config(run_dir: str | Path) -> RunConfig:
    """A run's config with `data_dir` resolved to where its data is now."""
    run_dir = Path(run_dir)
    config_dict = RunDir(run_dir.parent, run_dir.name).read_config()
    if config_dict is None:
        raise InputError(f"{run_dir} is not a run directory (no config.yaml)")
    config = from_dict(RunConfig, config_dict)
    return dataclasses.replace(config, data_dir=str(resolve_data_dir(run_dir, config)))


def save_baseline(run: RunDir, baseline) -> None:
    save_file(baseline.state(), str(run.path / BASELINE_STATE))


def load_baseline(model_config: ModelConfig, schema, data_dir: str | Path, state_path: Path | None):
    """A fitted baseline from its saved counts; runs made before counts were saved refit on train."""
    baseline = build_baseline(model_config, schema)
    if state_path is not None and state_path.is_file():
        return baseline.load_state(load_file(str(state_path)))
    log.info("no %s: refitting %s on the training split", BASELINE_STATE, model_config.backbone)
    train = SequenceData.load(
        data_dir, "train", data_columns(model_config, schema), model_config.window_length, "train"
    )
    return baseline.fit(train.arrays[schema.item_id.name], train.lengths)


def best_checkpoint(run_dir: Path) -> Path:
    results_path = run_dir / RESULTS
    if not results_path.is_file():
        raise InputError(f"{run_dir} has not finished (no {RESULTS}); resume it with `cmdrec train` first")
    results = read_json(results_path)
    if not isinstance(results, dict) or "best_step" not in results:
        raise InputError(f"{results_path} is damaged: it names no best_step; resume the run to rewrite it")
    path = run_dir / "checkpoints" / f"{results['best_step']:08d}"
    if not path.is_dir():
        raise InputError(f"{run_dir}: the best checkpoint {path.name} is missing; train the run again")
    return path


def load_trained(run_dir: str | Path, device: str = "cpu") -> tuple[object, RunConfig]:
    """The best model of a finished run, rebuilt from its checkpoint's own model config."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    schema = load_schema(config.data_dir)
    if not component(config.model.backbone).neural:
        return load_baseline(config.model, schema, config.data_dir, run_dir / BASELINE_STATE), config
    path = best_checkpoint(run_dir)
    verify_checkpoint(path, ignore=(TRAINER_STATE,))  # the optimizer state is for resuming only: not read here
    model_config = from_dict(ModelConfig, read_model_config(path))
    model = build_neural(model_config, schema, config.data_dir, torch.device(device))
    load_weights(model, path / (EMA_WEIGHTS if config.training.ema_decay else WEIGHTS))
    return model.to(device).eval(), dataclasses.replace(config, model=model_config)
