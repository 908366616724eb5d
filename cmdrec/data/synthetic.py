"""A small, realistic command log from a simulated BIM/CAD application, for the offline quickstart.

Commands belong to categories and carry descriptions. People work in tasks (draft walls, place
openings, annotate, navigate the view, manage files); each task is a Markov chain over its
commands, and each user prefers some tasks and some commands within them, so next-command
prediction has real structure to learn: task flow, personal habit and repetition. The
application also logs window focus changes (`Window.Focus`), a non-command that the `sample`
noise preset removes, as the real IDE logs do.
"""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from cmdrec.config import CatalogueConfig, DataConfig, ProcessingConfig, SourceConfig
from cmdrec.io import write_bytes_atomic, write_parquet_atomic

# command: (category, description)
COMMANDS: dict[str, tuple[str, str]] = {
    "Wall": ("Modeling", "draw a straight wall between two points"),
    "CurvedWall": ("Modeling", "draw a wall along an arc"),
    "Slab": ("Modeling", "create a floor slab from a closed outline"),
    "Roof": ("Modeling", "create a roof over the selected walls"),
    "Column": ("Modeling", "place a structural column"),
    "Beam": ("Modeling", "place a structural beam between two columns"),
    "Stair": ("Modeling", "create a stair between two levels"),
    "Door": ("Openings", "insert a door into a wall"),
    "Window": ("Openings", "insert a window into a wall"),
    "Opening": ("Openings", "cut a rectangular opening in a wall or slab"),
    "Move": ("Edit", "move the selected objects"),
    "Copy": ("Edit", "copy the selected objects to a new place"),
    "Rotate": ("Edit", "rotate the selected objects about a point"),
    "Mirror": ("Edit", "mirror the selected objects across a line"),
    "Trim": ("Edit", "trim a wall or line at an intersection"),
    "Offset": ("Edit", "create a parallel copy at a distance"),
    "Delete": ("Edit", "delete the selected objects"),
    "Undo": ("Edit", "undo the last change"),
    "Redo": ("Edit", "redo the last undone change"),
    "Select": ("Selection", "select objects by clicking"),
    "SelectSimilar": ("Selection", "select all objects of the same type"),
    "Properties": ("Selection", "show the properties of the selection"),
    "Dimension": ("Annotation", "add a linear dimension"),
    "Text": ("Annotation", "place a text note"),
    "Tag": ("Annotation", "tag objects with their type and number"),
    "Hatch": ("Annotation", "fill a closed area with a hatch pattern"),
    "ZoomExtents": ("View", "zoom to show the whole model"),
    "ZoomWindow": ("View", "zoom into a rectangle"),
    "Pan": ("View", "pan the view"),
    "Orbit": ("View", "orbit the 3D view"),
    "Section": ("View", "create a section view through the model"),
    "Level": ("View", "switch to another building level"),
    "Layer": ("Organization", "change the active layer"),
    "Save": ("File", "save the project"),
    "Open": ("File", "open a project"),
    "Export": ("File", "export drawings to PDF or IFC"),
    "Print": ("File", "print the current sheet"),
    "Sync": ("Collaboration", "synchronise with the central model"),
}

# task: transitions as {command: {next_command: weight}}; the first command starts the task
TASKS: dict[str, dict[str, dict[str, float]]] = {
    "walls": {
        "Wall": {"Wall": 5, "Trim": 2, "CurvedWall": 1, "Undo": 1, "Offset": 1, "Dimension": 1},
        "CurvedWall": {"Wall": 3, "Trim": 1, "Undo": 1},
        "Trim": {"Wall": 3, "Trim": 1, "Delete": 1},
        "Offset": {"Wall": 2, "Trim": 2},
        "Undo": {"Wall": 2, "Redo": 1, "Undo": 1},
        "Redo": {"Wall": 1},
        "Delete": {"Wall": 2},
        "Dimension": {"Wall": 1, "Dimension": 1},
    },
    "openings": {
        "Select": {"Door": 3, "Window": 3, "Properties": 1},
        "Door": {"Door": 2, "Window": 3, "Properties": 2, "Move": 1},
        "Window": {"Window": 4, "Door": 1, "Copy": 2, "Properties": 1, "Opening": 1},
        "Opening": {"Window": 1, "Properties": 1},
        "Copy": {"Window": 2, "Copy": 1, "Move": 1},
        "Move": {"Window": 1, "Door": 1, "Undo": 1, "Rotate": 1},
        "Rotate": {"Window": 1, "Door": 1},
        "Undo": {"Move": 1, "Window": 1},
        "Properties": {"Door": 1, "Window": 1, "Select": 1},
    },
    "structure": {
        "Level": {"Column": 3, "Slab": 2, "Stair": 1},
        "Column": {"Column": 3, "Copy": 2, "Beam": 3},
        "Copy": {"Column": 1, "Beam": 1, "Move": 1, "Mirror": 1},
        "Mirror": {"Column": 1, "Beam": 1},
        "Beam": {"Beam": 3, "Column": 1, "Slab": 1},
        "Slab": {"Roof": 1, "Level": 1, "Opening": 1},
        "Opening": {"Slab": 1, "Stair": 1},
        "Stair": {"Level": 1, "Slab": 1},
        "Roof": {"Orbit": 1, "Save": 1},
        "Move": {"Column": 1, "Beam": 1},
        "Orbit": {"Roof": 1},
        "Save": {"Level": 1},
    },
    "annotate": {
        "Section": {"Dimension": 3, "Tag": 2, "Text": 1},
        "Dimension": {"Dimension": 5, "Text": 1, "Tag": 1, "Move": 1},
        "Tag": {"Tag": 3, "Dimension": 1, "Hatch": 1},
        "Text": {"Text": 1, "Move": 1, "Dimension": 1},
        "Hatch": {"Hatch": 1, "Text": 1},
        "Move": {"Dimension": 1, "Text": 1},
    },
    "navigate": {
        "ZoomExtents": {"ZoomWindow": 3, "Pan": 2, "Orbit": 1, "Level": 1},
        "ZoomWindow": {"Pan": 2, "Select": 2, "ZoomExtents": 1},
        "Pan": {"Pan": 2, "ZoomWindow": 1, "Select": 1, "Orbit": 1},
        "Orbit": {"Orbit": 2, "ZoomExtents": 1, "Section": 1},
        "Section": {"ZoomExtents": 1},
        "Level": {"ZoomExtents": 1, "Pan": 1},
        "Select": {"SelectSimilar": 1, "Properties": 2, "Layer": 1},
        "SelectSimilar": {"Properties": 1, "Delete": 1, "Layer": 1},
        "Properties": {"Select": 1, "Pan": 1},
        "Delete": {"Undo": 1, "Pan": 1},
        "Undo": {"Pan": 1},
        "Layer": {"Select": 1, "Pan": 1},
    },
    "publish": {
        "Save": {"Sync": 2, "Export": 2, "Print": 1},
        "Sync": {"Export": 1, "Save": 1},
        "Export": {"Print": 1, "Export": 1, "Save": 1},
        "Print": {"Save": 1},
        "Open": {"ZoomExtents": 1},
        "ZoomExtents": {"Save": 1},
    },
}
TASK_LENGTH = {"walls": 14, "openings": 10, "structure": 12, "annotate": 10, "navigate": 6, "publish": 4}
NOISE_COMMAND = "Window.Focus"


def generate_sample_log(
    users: int = 60, sessions_per_user: int = 14, seed: int = 7
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (events with user_id, timestamp, command; catalogue with command, category, description)."""
    rng = np.random.default_rng(seed)
    task_names = list(TASKS)
    rows_user, rows_time, rows_command = [], [], []
    start = datetime(2025, 3, 3, 8, 0, 0)
    for user in range(users):
        task_preference = rng.dirichlet(np.full(len(task_names), 0.6))
        # each user skews every transition towards personal favourites
        habit = {c: rng.gamma(1.0, 1.0) for c in COMMANDS}
        pace = rng.uniform(3.0, 12.0)  # mean seconds between commands
        clock = start + timedelta(days=int(rng.integers(0, 5)), hours=float(rng.uniform(0, 2)))
        for _ in range(int(rng.integers(sessions_per_user // 2, sessions_per_user * 3 // 2 + 1))):
            clock += timedelta(hours=float(rng.uniform(2.0, 30.0)))
            if clock.hour < 7 or clock.hour > 19:  # people work in the daytime
                clock = clock.replace(hour=int(rng.integers(8, 11))) + timedelta(days=1)
            session = ["Open"] if rng.random() < 0.4 else []
            for _ in range(int(rng.integers(1, 6))):
                task = task_names[rng.choice(len(task_names), p=task_preference)]
                session += _walk(TASKS[task], habit, int(rng.poisson(TASK_LENGTH[task])) + 2, rng)
            if rng.random() < 0.3:
                session.append("Save")
            for command in session:
                if rng.random() < 0.06:
                    rows_user.append(f"u{user:03d}")
                    rows_time.append(clock)
                    rows_command.append(NOISE_COMMAND)
                clock += timedelta(seconds=float(rng.exponential(pace)) + 1.0)
                rows_user.append(f"u{user:03d}")
                rows_time.append(clock)
                rows_command.append(command)
    events = pl.DataFrame({"user_id": rows_user, "timestamp": rows_time, "command": rows_command})
    catalogue = pl.DataFrame(
        {
            "command": [*COMMANDS, NOISE_COMMAND],
            "category": [c for c, _ in COMMANDS.values()] + ["UI"],
            "description": [d for _, d in COMMANDS.values()] + ["the application window gained or lost focus"],
        }
    )
    return events, catalogue


def _walk(
    chain: dict[str, dict[str, float]], habit: dict[str, float], length: int, rng: np.random.Generator
) -> list[str]:
    command = next(iter(chain))
    walk = [command]
    for _ in range(length - 1):
        options = chain.get(command)
        if not options:
            break
        names = list(options)
        weights = np.array([options[n] * habit[n] for n in names])
        command = names[rng.choice(len(names), p=weights / weights.sum())]
        walk.append(command)
    return walk


def write_sample(directory: str | Path, **kwargs) -> tuple[Path, Path]:
    """Write `events.csv` and `catalogue.csv` to `directory`."""
    directory = Path(directory)
    events, catalogue = generate_sample_log(**kwargs)
    events_path, catalogue_path = directory / "events.csv", directory / "catalogue.csv"
    formatted = events.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S"))
    write_bytes_atomic(events_path, formatted.write_csv().encode())
    write_bytes_atomic(catalogue_path, catalogue.write_csv().encode())
    return events_path, catalogue_path


def sample_config(directory: str = "data/sample", outputs: str = "outputs/sample") -> DataConfig:
    """The data config of the bundled sample (as `configs/data/sample.yaml`)."""
    return DataConfig(
        name="sample",
        source=SourceConfig(path=f"{directory}/events.csv", timestamp_format="%Y-%m-%d %H:%M:%S"),
        catalogue=CatalogueConfig(path=f"{directory}/catalogue.csv"),
        processing=ProcessingConfig(noise_preset="sample"),
        processed_dir=f"{outputs}/processed",
        preprocessed_dir=f"{outputs}/preprocessed",
    )


def write_large_sample(
    directory: str | Path,
    events: int,
    file_format: str = "parquet",
    shard_events: int = 10_000_000,
    seed: int = 7,
    lanes: int = 50_000,
) -> list[Path]:
    """Write a log of `events` events from the same simulated application, in shards of `shard_events`
    (`events/events-00000.parquet`, ... or `.csv.gz`) beside `catalogue.csv`, for measuring scale.

    Generation is vectorised over `lanes` people working at once, each step one event of each, so
    memory is bounded by a shard, not by the log. People come from 64 personas (each with its own
    task preferences and command habits, as the small sample gives every user) and are replaced by
    new people when their sessions run out."""
    if events < 1 or shard_events < 1:
        raise ValueError("events and shard_events must be at least 1")
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, not {file_format!r}")
    directory = Path(directory)
    shards = directory / "events"
    shards.mkdir(parents=True, exist_ok=True)
    for old in shards.glob("events-*"):
        old.unlink()
    rng = np.random.default_rng(seed)
    chains = _TransitionTables(rng)
    lanes = max(1, min(lanes, events // 1000))  # a person works about 400 events: lanes see several
    people = _People(lanes, chains, rng)
    written, shard, buffer, buffered = [], 0, [], 0
    produced = 0
    while produced < events:
        for columns in people.step(rng):
            keep = min(len(columns[0]), events - produced)
            buffer.append(tuple(column[:keep] for column in columns))
            buffered += keep
            produced += keep
        if buffered >= shard_events or produced >= events:
            written.append(_write_shard(shards, shard, buffer, file_format))
            shard, buffer, buffered = shard + 1, [], 0
    _, catalogue = generate_sample_log(users=1, sessions_per_user=1)
    write_bytes_atomic(directory / "catalogue.csv", catalogue.write_csv().encode())
    return written


class _TransitionTables:
    """Cumulative next-command probabilities per persona, task and command."""

    PERSONAS = 64

    def __init__(self, rng: np.random.Generator):
        self.names = [*COMMANDS, NOISE_COMMAND]
        index = {name: i for i, name in enumerate(self.names)}
        tasks = list(TASKS)
        n = len(self.names)
        self.start = np.array([index[next(iter(TASKS[t]))] for t in tasks])
        self.length = np.array([TASK_LENGTH[t] for t in tasks], dtype=float)
        self.noise = index[NOISE_COMMAND]
        habit = rng.gamma(1.0, 1.0, size=(self.PERSONAS, n))
        self.task_cdf = np.cumsum(rng.dirichlet(np.full(len(tasks), 0.6), size=self.PERSONAS), axis=1)
        weights = np.zeros((len(tasks), n, n))
        for t, task in enumerate(tasks):
            for command, options in TASKS[task].items():
                for following, weight in options.items():
                    weights[t, index[command], index[following]] = weight
        personal = weights[None] * habit[:, None, None, :]  # persona, task, command, next
        totals = personal.sum(axis=-1, keepdims=True)
        self.dead_end = totals[..., 0] == 0  # the task ends after this command
        self.cdf = np.cumsum(personal / np.where(totals == 0, 1, totals), axis=-1)


class _People:
    """The state of every lane: who, which task, how far into it, and the clock."""

    def __init__(self, lanes: int, chains: _TransitionTables, rng: np.random.Generator):
        self.chains = chains
        self.next_user = 0
        self.user = np.zeros(lanes, dtype=np.int64)
        self.persona = np.zeros(lanes, dtype=np.int64)
        self.pace = np.zeros(lanes)
        self.clock = np.zeros(lanes, dtype=np.int64)  # microseconds since the epoch
        self.sessions_left = np.zeros(lanes, dtype=np.int64)
        self.tasks_left = np.zeros(lanes, dtype=np.int64)
        self.steps_left = np.zeros(lanes, dtype=np.int64)
        self.task = np.zeros(lanes, dtype=np.int64)
        self.command = np.zeros(lanes, dtype=np.int64)
        self._new_people(np.arange(lanes), rng)

    def _new_people(self, lanes: np.ndarray, rng) -> None:
        count = len(lanes)
        self.user[lanes] = np.arange(self.next_user, self.next_user + count)
        self.next_user += count
        self.persona[lanes] = rng.integers(0, _TransitionTables.PERSONAS, count)
        self.pace[lanes] = rng.uniform(3.0, 12.0, count)
        start = int(datetime(2025, 3, 3, 8, tzinfo=timezone.utc).timestamp() * 1e6)
        self.clock[lanes] = start + rng.integers(0, 5 * 86_400, count) * 1_000_000
        self.sessions_left[lanes] = rng.integers(7, 22, count)
        self.tasks_left[lanes] = 0
        self.steps_left[lanes] = 0

    def step(self, rng) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One event of every lane (after a focus change on some): [(users, times, commands), ...]."""
        chains = self.chains
        ending = (self.steps_left <= 0) | chains.dead_end[self.persona, self.task, self.command]
        new_session = ending & (self.tasks_left <= 0)
        if new_session.any():
            gone = np.flatnonzero(new_session & (self.sessions_left <= 0))
            if len(gone):
                self._new_people(gone, rng)
            lanes = np.flatnonzero(new_session)
            hours = rng.uniform(2.0, 30.0, len(lanes))
            self.clock[lanes] += (hours * 3.6e9).astype(np.int64)
            self.sessions_left[lanes] -= 1
            self.tasks_left[lanes] = rng.integers(1, 6, len(lanes))
        lanes = np.flatnonzero(ending)
        if len(lanes):
            draw = rng.random(len(lanes))[:, None]
            task = (draw > chains.task_cdf[self.persona[lanes]]).sum(axis=1).clip(max=len(chains.start) - 1)
            self.task[lanes] = task
            self.command[lanes] = chains.start[task]
            self.steps_left[lanes] = rng.poisson(chains.length[task]) + 1
            self.tasks_left[lanes] -= 1
        walking = np.flatnonzero(~ending)
        if len(walking):
            rows = chains.cdf[self.persona[walking], self.task[walking], self.command[walking]]
            following = (rng.random(len(walking))[:, None] > rows).sum(axis=1).clip(max=len(chains.names) - 1)
            self.command[walking] = following
            self.steps_left[walking] -= 1
        noisy = np.flatnonzero(rng.random(len(self.user)) < 0.06)
        noise = (self.user[noisy], self.clock[noisy].copy(), np.full(len(noisy), chains.noise))
        self.clock += ((rng.exponential(self.pace) + 1.0) * 1e6).astype(np.int64)
        return [noise, (self.user.copy(), self.clock.copy(), self.command.copy())]


def _write_shard(directory: Path, number: int, buffer: list, file_format: str) -> Path:
    frame = pl.DataFrame(
        {
            "user_id": np.concatenate([b[0] for b in buffer]),
            "timestamp": pl.Series(np.concatenate([b[1] for b in buffer])).cast(pl.Datetime("us")),
            "command": pl.Series(np.concatenate([b[2] for b in buffer])).replace_strict(
                dict(enumerate([*COMMANDS, NOISE_COMMAND])), return_dtype=pl.Utf8
            ),
        }
    ).with_columns(pl.concat_str(pl.lit("u"), pl.col("user_id").cast(pl.Utf8).str.zfill(7)).alias("user_id"))
    if file_format == "parquet":
        path = directory / f"events-{number:05d}.parquet"
        write_parquet_atomic(frame, path)
    else:
        path = directory / f"events-{number:05d}.csv.gz"
        text = frame.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")).write_csv()
        write_bytes_atomic(path, gzip.compress(text.encode(), compresslevel=1))
    return path
