"""Checkpoints: `checkpoints/<step>/` with safetensors weights, trainer state (optimizer, RNG,
data position), the model config and metrics, plus a manifest of file sizes and checksums. A sharded
checkpoint of an FSDP run holds `sharded/` instead of the weights: every rank's shards of the
weights and of the optimizer state, as torch.distributed.checkpoint writes them.

A checkpoint is written to a temporary directory and renamed into place, so a crash never
leaves a half-written one under its final name; a damaged one is detected by its manifest."""

from __future__ import annotations

import errno
import hashlib
import json
import pickle
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from cmdrec.artifacts.migrate import migrate_model_config, stored_model_version
from cmdrec.errors import InputError
from cmdrec.io import read_json, write_json_atomic

WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "ema.safetensors"
TRAINER_STATE = "trainer_state.pt"
MODEL_CONFIG = "model_config.json"
METRICS = "metrics.json"
MANIFEST = "manifest.json"
SHARDED = "sharded"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def staging_directory(directory: Path, step: int) -> Path:
    """Where a checkpoint is written before it is renamed into place."""
    return directory / f".tmp-{step:08d}"


def save_checkpoint(
    directory: Path,
    step: int,
    model: torch.nn.Module,
    trainer_state: dict,
    model_config: dict,
    metrics: dict,
    ema_model: torch.nn.Module | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    partial: bool = True,
    staged_shards: bool = False,
) -> Path:
    """`weights`, when given, replaces `model`'s state: the trainable part of an adapter run
    (`partial`), or the full state an FSDP run gathered from its shards. `staged_shards`: the ranks
    wrote their shards to `staging_directory(...)/sharded` already; the rest is added beside them."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{step:08d}"
    tmp = staging_directory(directory, step)
    if not staged_shards:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    writing = WEIGHTS
    try:
        if weights is not None:
            # "every name": a gathered state that writes a tied weight under each name it has
            save_file(weights, str(tmp / WEIGHTS), metadata={"partial": "true" if partial else "every name"})
        elif not staged_shards:
            save_model(model, str(tmp / WEIGHTS))
        if ema_model is not None:
            writing = EMA_WEIGHTS
            save_model(ema_model, str(tmp / EMA_WEIGHTS))
        writing = TRAINER_STATE
        torch.save(trainer_state, tmp / TRAINER_STATE)
        writing = MODEL_CONFIG
        (tmp / MODEL_CONFIG).write_text(json.dumps(model_config, indent=2))
        writing = METRICS
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2))
        writing = MANIFEST
        files = {
            p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_json_atomic(tmp / MANIFEST, {"step": step, "files": files})
    except Exception as error:  # safetensors and torch wrap the OS error in their own types
        shutil.rmtree(tmp, ignore_errors=True)
        if _out_of_space(error):
            raise InputError(_no_space_message(directory, final, writing)) from None
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def _out_of_space(error: BaseException) -> bool:
    return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


def _no_space_message(directory: Path, final: Path, writing: str) -> str:
    previous = list_checkpoints(directory)
    needed = sum(f.stat().st_size for f in previous[-1].rglob("*") if f.is_file()) if previous else None
    free = shutil.disk_usage(directory).free
    resume = f"; {previous[-1].name} stays the resume point" if previous else ""
    size = f"about {needed:,} bytes needed (the last checkpoint's size), " if needed else ""
    return f"checkpoint {final}: could not write {writing}: no space left on device ({size}{free:,} free){resume}"


def verify_checkpoint(path: Path, ignore: tuple[str, ...] = ()) -> None:
    """Every file the manifest lists is there with its size and checksum; `ignore`: files the caller
    does not read (evaluation never reads the optimizer state)."""
    if not path.is_dir():
        raise InputError(f"checkpoint {path} is missing; its run's best step points at it")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"checkpoint {path} is incomplete: {MANIFEST} is missing")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise InputError(f"{manifest_path} is damaged: it lists no files")
    for name, expected in manifest["files"].items():
        if name in ignore:
            continue
        file = path / name
        if not file.is_file():
            raise InputError(f"checkpoint {path} is incomplete: {name} is missing")
        if file.stat().st_size != expected["bytes"]:
            raise InputError(
                f"checkpoint {path} is damaged: {name} has {file.stat().st_size} bytes, expected {expected['bytes']} "
                "(truncated write?); resume from an earlier checkpoint or delete this one"
            )
        if sha256_file(file) != expected["sha256"]:
            raise InputError(
                f"checkpoint {path} is damaged: {name} has the right size but not its checksum (changed on disk); "
                "resume from an earlier checkpoint or delete this one"
            )


def load_checkpoint(
    path: Path, model: torch.nn.Module, ema_model: torch.nn.Module | None = None, weights: str = WEIGHTS
) -> dict:
    """Load weights into `model` (and the EMA copy) and return the trainer state (loaded with weights_only=True)."""
    verify_checkpoint(path)
    load_weights(model, path / weights)
    if ema_model is not None and (path / EMA_WEIGHTS).is_file():
        load_model(ema_model, str(path / EMA_WEIGHTS))
    try:
        return torch.load(path / TRAINER_STATE, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            f"{path / TRAINER_STATE} holds objects other than tensors and plain values: refused as unsafe (loading "
            "it fully could run code it carries); delete this checkpoint"
        ) from None


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Full weights, or the trainable part of an adapter run (the frozen base comes from its files);
    from a sharded checkpoint, its shards assembled in this one process."""
    if not path.is_file() and (path.parent / SHARDED).is_dir():
        load_sharded_weights(model, path.parent / SHARDED)
        return
    with safe_open(str(path), "pt") as handle:
        layout = (handle.metadata() or {}).get("partial")
    if layout == "every name":
        model.load_state_dict(load_file(str(path)))
        return
    if layout != "true":
        load_model(model, str(path))
        return
    weights = load_file(str(path))
    result = model.load_state_dict(weights, strict=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    absent = trainable - set(weights)
    if result.unexpected_keys or absent:
        raise InputError(
            f"{path} does not match this model: unexpected {result.unexpected_keys[:3]}, missing {sorted(absent)[:3]}"
        )


def load_sharded_weights(model: torch.nn.Module, directory: Path) -> None:
    """The weights of a sharded checkpoint into an unsharded model, without a process group."""
    import torch.distributed.checkpoint as dcp

    state = model.state_dict()
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load({"model": state}, checkpoint_id=str(directory), no_dist=True)
    except Exception as error:  # noqa: BLE001 - DCP reports a key mismatch in its own exception types
        raise InputError(f"{directory}: not this model's sharded checkpoint ({error})") from None
    model.load_state_dict(state)


def is_sharded_checkpoint(path: Path) -> bool:
    return (path / SHARDED).is_dir()


def read_model_config(path: Path) -> dict:
    """A checkpoint's model config, migrated to today's config format."""
    model = read_json(path / MODEL_CONFIG)
    return migrate_model_config(model, stored_model_version(model))


def list_checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def prune_checkpoints(directory: Path, keep: int, protect: set[Path]) -> None:
    for path in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        if path not in protect:
            shutil.rmtree(path)
