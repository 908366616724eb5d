"""Run directories: `runs/<name>/` with the resolved config, checkpoints, logs and a status file,
and the listing behind `cmdrec runs`."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import yaml

from cmdrec.artifacts.checkpoint import list_checkpoints
from cmdrec.artifacts.migrate import migrate_run_config
from cmdrec.errors import InputError
from cmdrec.io import read_json, read_yaml, write_json_atomic, write_text_atomic

STATUS = "status.json"
RUN_RECORD = "run.json"  # the run format version and where its data is


class RunDir:
    def __init__(self, root: str | Path, name: str):
        self.path = Path(root) / name
        self.checkpoints = self.path / "checkpoints"
        self.logs = self.path / "logs"

    def write_config(self, config_dict: dict) -> None:
        write_text_atomic(self.path / "config.yaml", yaml.safe_dump(config_dict, sort_keys=False))

    def read_config(self) -> dict | None:
        """The saved config, migrated to today's config format."""
        path = self.path / "config.yaml"
        if not path.is_file():
            return None
        record = self.path / RUN_RECORD
        version = read_json(record).get("format_version", 1) if record.is_file() else 1
        return migrate_run_config(read_yaml(path), version)

    def set_status(self, state: str, **extra) -> None:
        previous = self.status()
        write_json_atomic(
            self.path / STATUS,
            previous | {"state": state, "pid": os.getpid(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S")} | extra,
        )

    def status(self) -> dict:
        path = self.path / STATUS
        return read_json(path) if path.is_file() else {}

    def trainer_elsewhere(self) -> int | None:
        """The pid of another live process training this run (on this machine), if any."""
        status = self.status()
        pid = status.get("pid")
        return pid if status.get("state") == "running" and pid != os.getpid() and process_alive(pid) else None


class CsvLog:
    """Append-only CSV; on resume, rows past the checkpoint's step are dropped so logs match the weights."""

    def __init__(self, path: Path, fields: list[str], resume_step: int | None):
        self.path, self.fields = path, fields
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if resume_step is not None and path.is_file():
            with path.open() as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore").writerow(row)


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def list_runs(root: str | Path) -> list[dict]:
    """Each run's state (running / finished / failed / resumable / pruned), last step, best validation
    metric and its test figure. Folders that hold runs (`runs/sweeps/<study>/`) are looked into; a run
    is named by its path under `root`."""
    root = Path(root)
    return [_describe(root, path) for path in _run_dirs(root)] if root.is_dir() else []


def _run_dirs(folder: Path) -> list[Path]:
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (path / STATUS).is_file() or (path / "config.yaml").is_file() or (path / "checkpoints").is_dir():
            found.append(path)
        else:
            found.extend(_run_dirs(path))
    return found


def _describe(root: Path, path: Path) -> dict:
    run = RunDir(path.parent, path.name)
    try:
        status = run.status()
    except InputError:  # a listing shows every run; a damaged status reads as unknown
        status = {}
    checkpoints = list_checkpoints(run.checkpoints)
    state = status.get("state", "unknown")
    if state == "running" and not process_alive(status.get("pid")):
        state = "resumable" if checkpoints else "failed"
    elif state in ("failed", "interrupted") and checkpoints:
        state = "resumable"
    monitor = status.get("monitor")
    results = path / "results.json"
    test = None
    if results.is_file() and monitor:
        try:
            test = read_json(results).get("test", {}).get(monitor)
        except (InputError, AttributeError):
            test = None
    return {
        "name": str(path.relative_to(root)),
        "state": state,
        "step": status.get("step", int(checkpoints[-1].name) if checkpoints else 0),
        "monitor": monitor,
        "best": status.get("best"),
        "test": test,
        "updated": status.get("updated"),
    }
