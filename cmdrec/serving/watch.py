"""`cmdrec watch LOGFILE`: follow an application's log as it is written and show the suggestions.

The log is plain text in the generic reader's format: CSV with a header (command and, optionally,
timestamp columns) or JSONL. New complete lines are read as they are appended; a truncated file is
read again from its start and a rotated one (a new file under the same name) from the start of the
new file. Compressed logs cannot be followed and are refused. Each batch of new events goes to the
service's live-session endpoint (`--server URL`), or is scored in-process (`--bundle DIR`); either way
the history is cleaned as the training log was, so noise and repeats never reach the model."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cmdrec.errors import InputError, RequestError

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


@dataclass
class LogFormat:
    command_column: str = "command"
    timestamp_column: str | None = "timestamp"
    timestamp_format: str | None = None  # strptime; None: ISO 8601


class LogFollower:
    """New events of a growing log file, surviving truncation and rotation."""

    def __init__(self, path: str | Path, log_format: LogFormat, from_start: bool = True):
        self.path, self.format = Path(path), log_format
        if self.path.suffix.lower() in COMPRESSED:
            raise InputError(f"{self.path}: a compressed log cannot be followed as it grows; watch the plain file")
        self.jsonl = self.path.suffix.lower() in (".jsonl", ".ndjson")
        self.handle, self.inode, self.header, self.pending = None, None, None, b""
        self.line = 0
        self.from_start = from_start

    def _open(self, at_end: bool) -> bool:
        try:
            self.handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        self.inode, self.pending, self.line = os.fstat(self.handle.fileno()).st_ino, b"", 0
        self.header = None
        if at_end:
            if not self.jsonl:  # the header is still needed
                self.header = self._split(self.handle.readline())
                self.line = 1
            self.handle.seek(0, os.SEEK_END)
        return True

    def poll(self) -> list[tuple[str, datetime | None]]:
        """Events appended since the last call (complete lines only)."""
        if self.handle is None and not self._open(at_end=not self.from_start):
            return []
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            status = None
        if status is not None and (status.st_ino != self.inode or status.st_size < self.handle.tell()):
            self.handle.close()  # rotated or truncated: read the file now under that name from its start
            self._open(at_end=False)
        data = self.pending + self.handle.read()
        lines = data.split(b"\n")
        self.pending = lines.pop()  # an incomplete last line waits for the rest
        events = []
        for raw in lines:
            self.line += 1
            if not raw.strip():
                continue
            event = self._event(raw)
            if event is not None:
                events.append(event)
        return events

    def _split(self, raw: bytes) -> list[str]:
        return next(csv.reader(io.StringIO(raw.decode("utf-8").rstrip("\r"))), [])

    def _event(self, raw: bytes) -> tuple[str, datetime | None] | None:
        where = f"{self.path}, line {self.line}"
        if self.jsonl:
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InputError(f"{where}: not a JSON object ({error})") from error
        else:
            if self.header is None:
                self.header = self._split(raw)
                return None
            values = self._split(raw)
            if len(values) != len(self.header):
                raise InputError(f"{where}: expected {len(self.header)} fields, found {len(values)}")
            record = dict(zip(self.header, values, strict=True))
        if self.format.command_column not in record:
            raise InputError(f"{where}: no field {self.format.command_column!r}")
        stamp = None
        column = self.format.timestamp_column
        if column and record.get(column) not in (None, ""):
            value = record[column]
            try:
                stamp = (
                    datetime.strptime(value, self.format.timestamp_format)
                    if self.format.timestamp_format
                    else datetime.fromisoformat(value)
                )
            except (TypeError, ValueError) as error:
                raise InputError(f"{where}, field {column!r}: cannot parse timestamp {value!r}") from error
        return str(record[self.format.command_column]), stamp


def server_sink(url: str, session_id: str, k: int, attributes: dict[str, str] | None, timeout: float = 10.0):
    """Post new events to a running service; returns its suggestions."""
    import httpx

    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    def send(events):
        body = {"commands": [c for c, _ in events], "k": k, "attributes": attributes}
        if all(t is not None for _, t in events):
            body["timestamps"] = [t.isoformat() for _, t in events]
        response = client.post(f"/v1/sessions/{session_id}/events", json=body)
        payload = response.json()
        if response.status_code >= 400:
            error = payload.get("error", {})
            raise RequestError(error.get("field") or "request", error.get("message", response.text))
        return [(s["command"], s["probability"]) for s in payload["suggestions"]]

    return send


def bundle_sink(path: str | Path, k: int, attributes: dict[str, str] | None, keep: int = 1000):
    """Score in-process: the watcher keeps the recent history itself."""
    from cmdrec.serving.predict import Predictor

    predictor, history = Predictor(path), []

    def send(events):
        history.extend(events)
        del history[:-keep]
        times = [t for _, t in history]
        answer = predictor.recommend(
            [c for c, _ in history], k, None if any(t is None for t in times) else times, attributes=attributes
        )
        return list(zip(answer.commands, answer.probabilities, strict=True))

    return send


def watch(
    follower: LogFollower,
    send: Callable[[list], list],
    show: Callable[[list, list], None],
    interval: float = 0.5,
    stop: threading.Event | None = None,
    max_seconds: float | None = None,
) -> None:
    """Poll the log; after each batch of new events, show them with the suggestions that follow."""
    stop = stop or threading.Event()
    started = time.monotonic()
    while not stop.is_set() and (max_seconds is None or time.monotonic() - started < max_seconds):
        events = follower.poll()
        if events:
            try:
                show(events, send(events))
            except RequestError as error:  # e.g. only noise so far: nothing to suggest yet
                show(events, [], str(error))
        stop.wait(interval)


def print_suggestions(events: list, suggestions: list, error: str | None = None) -> None:
    print("ran: " + ", ".join(c for c, _ in events))
    if error:
        print(f"  (no suggestion: {error})")
    for rank, (command, probability) in enumerate(suggestions, 1):
        print(f"  {rank:>2}. {command}  {probability:.1%}")
    print(flush=True)
