"""Bundles: a trained model as a directory that can be copied anywhere and served.

`bundle.json` names the format and its version, the run it came from, the data fingerprint
(sha256 over the schema and the workflow files), the library versions, what personal data it
holds, and every file with its size and checksum. Beside it: `config.yaml` (the run config, its
`data_dir` the bundle itself), the weights (`model.safetensors`, a merged `decoder/` for pretrained
backbones, or a baseline's fitted counts), and the dataset files serving needs: schema, workflow,
items, text embeddings, processing settings. Nothing in it depends on the working directory.

Event attributes (a developer id, say) are personal data: by default their vocabulary is stored as
salted hashes, and requests' values are hashed with the same salt before lookup.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import secrets
import shutil
import time
from importlib import metadata
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, load_model, save_file, save_model

from cmdrec import __version__
from cmdrec.artifacts.adapters import export_merged
from cmdrec.artifacts.checkpoint import sha256_file
from cmdrec.artifacts.loading import (
    BASELINE_STATE,
    build_neural,
    is_adapter_run,
    load_baseline,
    load_trained,
)
from cmdrec.artifacts.migrate import CONFIG_FORMAT_VERSION, migrate_run_config
from cmdrec.config import RunConfig, from_dict, to_dict
from cmdrec.data.dataset import SCHEMA_FILE, SERVED_FILES, WORKFLOW_FILE, PreparedDataset
from cmdrec.data.sequences import load_schema
from cmdrec.data.workflow import event_attributes
from cmdrec.errors import InputError
from cmdrec.io import read_json, read_yaml, write_json_atomic, write_text_atomic
from cmdrec.models.registry import component

log = logging.getLogger(__name__)
BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "cmdrec-bundle"
BUNDLE_FORMAT_VERSION = 2  # 1: config format 2 (a flat model config); 2: config format 3
CONFIG_FILE = "config.yaml"
MODEL_WEIGHTS = "model.safetensors"
DECODER_DIR = "decoder"
COMMANDS_FILE = "commands.json"
LIBRARIES = ("torch", "transformers", "numpy", "polars", "safetensors", "peft")


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / BUNDLE_FILE).is_file()


def hash_value(salt: str, value: str) -> str:
    return hashlib.sha256(f"{salt}\0{value}".encode()).hexdigest()[:24]


def data_fingerprint(directory: str | Path) -> str:
    """sha256 over the schema and the workflow files: what a request is encoded with."""
    dataset = PreparedDataset(directory)
    digest = hashlib.sha256()
    for path in [dataset.schema_path, *sorted(dataset.workflow_dir.iterdir())]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version(), "cmdrec": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def export_bundle(run_dir: str | Path, out: str | Path, *, keep_attribute_values: bool = False) -> Path:
    """Write the best model of a finished run (or a baseline) as a bundle at `out`."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; choose another --out or remove it")
    model, config = load_trained(run_dir)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    try:
        _copy_data(Path(config.data_dir), tmp)
        salts = _hash_attributes(tmp) if not keep_attribute_values else {}
        model_config = _write_weights(model, config, tmp)
        bundle_config = dataclasses.replace(config, data_dir=".", model=model_config)
        write_text_atomic(tmp / CONFIG_FILE, yaml.safe_dump(to_dict(bundle_config), sort_keys=False))
        write_json_atomic(tmp / COMMANDS_FILE, _commands(tmp))
        personal = _personal_data(tmp, salts)
        files = {
            str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_json_atomic(
            tmp / BUNDLE_FILE,
            {
                "format": BUNDLE_FORMAT,
                "format_version": BUNDLE_FORMAT_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "run": {"name": config.name, "path": str(run_dir.resolve())},
                "backbone": config.model.backbone,
                "neural": component(config.model.backbone).neural,
                "data_fingerprint": data_fingerprint(tmp),
                "source_data_fingerprint": data_fingerprint(config.data_dir),
                "libraries": library_versions(),
                "attribute_salts": salts,
                "personal_data": personal,
                "files": files,
            },
        )
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name, note in personal.items():
        log.warning("bundle %s: %s %s", out, name, note)
    return out


def _copy_data(data_dir: Path, target: Path) -> None:
    for name in SERVED_FILES:
        source = data_dir / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.is_file():
            shutil.copy2(source, target / name)
    if not PreparedDataset(target).exists():
        raise InputError(f"{data_dir} has no {SCHEMA_FILE}; it is not a preprocessed dataset")


def _hash_attributes(directory: Path) -> dict[str, str]:
    """Replace the vocabulary of every event attribute by salted hashes; returns each column's salt."""
    dataset = PreparedDataset(directory)
    path = dataset.workflow_dir / WORKFLOW_FILE
    state = read_json(path)
    salts = {}
    for column in event_attributes(dataset.workflow()):
        salts[column] = secrets.token_hex(16)
        fitted = state["categorify"][column]
        fitted["values"] = [hash_value(salts[column], v) for v in fitted["values"]]
    write_json_atomic(path, state)
    return salts


def _personal_data(directory: Path, salts: dict[str, str]) -> dict[str, str]:
    workflow = PreparedDataset(directory).workflow()
    notes = {}
    for column in event_attributes(workflow):
        count = len(workflow.categorify[column].values)
        notes[column] = (
            f"vocabulary of {count} values stored as salted hashes"
            if column in salts
            else f"vocabulary of {count} values stored as given (personal data: share this bundle accordingly)"
        )
    return notes


def _write_weights(model, config: RunConfig, directory: Path):
    """Weights into the bundle; returns the model config that loads them from there."""
    model_config = config.model
    spec = component(model_config.backbone)
    if not spec.neural:
        save_file(model.state(), str(directory / BASELINE_STATE))
        return model_config
    if not spec.pretrained_weights:
        save_model(model, str(directory / MODEL_WEIGHTS))
        return model_config
    if is_adapter_run(model_config):
        model_config = export_merged(model, model_config, directory)
    else:
        model.backbone.decoder.save_pretrained(directory / DECODER_DIR)
    rest = {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("backbone.decoder.")
    }
    save_file(rest, str(directory / MODEL_WEIGHTS))
    return dataclasses.replace(model_config, pretrained=dataclasses.replace(model_config.pretrained, path=DECODER_DIR))


def _commands(directory: Path) -> list[dict]:
    items = PreparedDataset(directory).items()
    columns = items.columns
    return [
        {
            "id": row["command"],
            "command": row["name"],
            "category": row.get("category_name") if "category_name" in columns else None,
            "description": row.get("description") if "description" in columns else None,
        }
        for row in items.iter_rows(named=True)
    ]


# ---------------------------------------------------------------- loading


def read_bundle_info(path: str | Path) -> dict:
    path = Path(path)
    try:
        info = json.loads((path / BUNDLE_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path / BUNDLE_FILE} cannot be read as a bundle manifest: {error}") from error
    if not isinstance(info, dict) or info.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{path / BUNDLE_FILE} is not a cmdrec bundle manifest")
    version = info.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
        raise InputError(
            f"{path} is bundle format {version!r}; this cmdrec ({__version__}) reads formats up to "
            f"{BUNDLE_FORMAT_VERSION}: upgrade cmdrec"
        )
    return info


def verify_bundle(path: Path, info: dict) -> None:
    if not isinstance(info.get("files"), dict) or not isinstance(info.get("data_fingerprint"), str):
        raise InputError(f"{path / BUNDLE_FILE} is damaged: it lists no files or no data fingerprint")
    for name, expected in info["files"].items():
        file = path / name
        if not file.is_file():
            raise InputError(f"bundle {path} is incomplete: {name} is missing")
        if file.stat().st_size != expected["bytes"]:
            raise InputError(f"bundle {path}: {name} has {file.stat().st_size} bytes, expected {expected['bytes']}")
        if sha256_file(file) != expected["sha256"]:
            raise InputError(f"bundle {path}: {name} does not match its checksum (damaged or edited)")
    if data_fingerprint(path) != info["data_fingerprint"]:
        raise InputError(f"bundle {path}: the schema and workflow do not match the bundle's data fingerprint")


def check_dataset(bundle: str | Path, data_dir: str | Path) -> None:
    """Refuse to evaluate a bundle on data encoded by another workflow (its ids would mean other commands)."""
    if data_fingerprint(data_dir) != read_bundle_info(bundle)["source_data_fingerprint"]:
        raise InputError(f"{data_dir} was not encoded by the workflow that {bundle} was trained with")


def load_bundle(path: str | Path, device: str = "cpu") -> tuple[object, RunConfig]:
    path = Path(path).resolve()
    info = read_bundle_info(path)
    verify_bundle(path, info)
    config_format = 2 if info["format_version"] == 1 else CONFIG_FORMAT_VERSION
    config = from_dict(RunConfig, migrate_run_config(read_yaml(path / CONFIG_FILE), config_format))
    model_config = config.model
    if model_config.pretrained is not None and model_config.pretrained.path == DECODER_DIR:
        decoder = dataclasses.replace(model_config.pretrained, path=str(path / DECODER_DIR))
        model_config = dataclasses.replace(model_config, pretrained=decoder)
    config = dataclasses.replace(config, data_dir=str(path), model=model_config)
    schema = load_schema(path)
    if not component(model_config.backbone).neural:
        return load_baseline(model_config, schema, path, path / BASELINE_STATE), config
    model = build_neural(model_config, schema, path, torch.device(device))
    if not component(model_config.backbone).pretrained_weights:
        load_model(model, str(path / MODEL_WEIGHTS), device=device)
    else:
        result = model.load_state_dict(load_file(str(path / MODEL_WEIGHTS)), strict=False)
        stray = [k for k in result.missing_keys if not k.startswith("backbone.decoder.")]
        if stray or result.unexpected_keys:
            raise InputError(
                f"{path}: weights do not match the model (missing {stray[:3]}, unexpected {result.unexpected_keys[:3]})"
            )
    return model.to(device).eval(), config


def load_model_dir(path: str | Path, device: str = "cpu") -> tuple[object, RunConfig]:
    """A bundle, or a finished run's best model, with its config (`data_dir` resolved)."""
    return load_bundle(path, device) if is_bundle(path) else load_trained(path, device)
