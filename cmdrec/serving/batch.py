"""Batch prediction: `cmdrec predict BUNDLE --input histories.{parquet,jsonl,csv} --output out.parquet`.

Inputs, read in chunks so any size streams through:
- JSONL, one history per line: `{"id": ..., "history": [...], "timestamps": [...], "attributes": {...}}`
  (`id`, `timestamps` and `attributes` optional);
- Parquet with the same columns (`history` a list of strings, `timestamps` a list of ISO strings or times);
- CSV in the long form of a log, one event per row: `id,command[,timestamp][,attribute columns]`,
  the rows of one history adjacent and in order.
The output has one row per input history: `row` (1-based), `id`, `suggestions`, `probabilities`,
`unknown_commands` and `error`; a bad row gets its error there, is counted, and never stops the run.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from cmdrec.errors import InputError, RequestError
from cmdrec.serving.predict import Predictor, check_k

OUTPUT_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("suggestions", pa.list_(pa.string())),
        ("probabilities", pa.list_(pa.float64())),
        ("unknown_commands", pa.list_(pa.string())),
        ("error", pa.string()),
    ]
)


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    k: int = 10,
    chunk_size: int = 512,
    show_progress: bool = True,
) -> dict:
    """Score every history of `input_path`; returns counts (histories, scored, bad rows and the first errors)."""
    check_k(k)
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InputError(f"--input {input_path} does not exist")
    rows = _reader(input_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".tmp")
    os.close(fd)
    report = {"histories": 0, "scored": 0, "bad_rows": 0, "errors": []}
    try:
        with pq.ParquetWriter(tmp, OUTPUT_SCHEMA) as writer:
            progress = tqdm(unit="history", desc=f"predict {input_path.name}", disable=not show_progress)
            chunk = []
            for item in rows:
                chunk.append(item)
                if len(chunk) == chunk_size:
                    writer.write_table(_score_chunk(predictor, chunk, k, report))
                    progress.update(len(chunk))
                    chunk = []
            if chunk:
                writer.write_table(_score_chunk(predictor, chunk, k, report))
                progress.update(len(chunk))
            progress.close()
        os.replace(tmp, output_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return report


def _score_chunk(predictor: Predictor, chunk: list[dict], k: int, report: dict) -> pa.Table:
    prepared, results = [], []
    for item in chunk:
        report["histories"] += 1
        try:
            if item.get("error"):
                raise RequestError(item["error_field"], item["error"])
            times = item.get("timestamps")
            times = None if times is None else [_time(t, f"timestamps[{i}]") for i, t in enumerate(times)]
            prepared.append((item, predictor.prepare(item["history"], times, item.get("attributes"))))
        except RequestError as error:
            results.append((item, None, str(error)))
    answers = predictor.score([p for _, p in prepared], k) if prepared else []
    results += [(item, answer, None) for (item, _), answer in zip(prepared, answers, strict=True)]
    results.sort(key=lambda r: r[0]["row"])
    columns = {name: [] for name in OUTPUT_SCHEMA.names}
    for item, answer, error in results:
        if error is not None:
            report["bad_rows"] += 1
            if len(report["errors"]) < 10:
                report["errors"].append(f"row {item['row']}: {error}")
        else:
            report["scored"] += 1
        columns["row"].append(item["row"])
        columns["id"].append(None if item.get("id") is None else str(item["id"]))
        columns["suggestions"].append(answer.commands if answer else None)
        columns["probabilities"].append(answer.probabilities if answer else None)
        columns["unknown_commands"].append(answer.unknown_commands if answer else None)
        columns["error"].append(error)
    return pa.table(columns, schema=OUTPUT_SCHEMA)


def _time(value, field: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            pass
    raise RequestError(field, f"not an ISO 8601 time: {value!r}")


def _reader(path: Path) -> Iterator[dict]:
    name = path.name.lower()
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return _jsonl(path)
    if name.endswith(".parquet"):
        return _parquet(path)
    if name.endswith(".csv"):
        return _csv(path)
    raise InputError(f"--input {path}: expected a .jsonl, .parquet or .csv file")


def _checked(item: dict, row: int) -> dict:
    """A history row as `prepare` takes it, or the row with the reason it cannot be one."""
    unknown = sorted(set(item) - {"id", "history", "timestamps", "attributes"})
    problem = None
    if unknown:
        problem = ("body", f"unknown field(s) {unknown}; expected id, history, timestamps, attributes")
    elif not isinstance(item.get("history"), list):
        problem = ("history", f"expected a list of command names, got {item.get('history')!r}")
    elif item.get("attributes") is not None and not isinstance(item["attributes"], dict):
        problem = ("attributes", f"expected a mapping of attribute names to values, got {item['attributes']!r}")
    elif item.get("timestamps") is not None and not isinstance(item["timestamps"], list):
        problem = ("timestamps", f"expected a list of times, got {item['timestamps']!r}")
    out = {**item, "row": row}
    if problem:
        out["error_field"], out["error"] = problem
    return out


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open("rb") as handle:
        for row, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                yield {"row": row, "error_field": "line", "error": f"not a JSON object ({error})"}
                continue
            if not isinstance(item, dict):
                yield {"row": row, "error_field": "line", "error": f"expected a JSON object, got {item!r}"}
                continue
            yield _checked(item, row)


def _parquet(path: Path) -> Iterator[dict]:
    handle = pq.ParquetFile(path)
    columns = [c for c in ("id", "history", "timestamps", "attributes") if c in handle.schema_arrow.names]
    if "history" not in columns:
        raise InputError(f"{path}: no 'history' column (found {handle.schema_arrow.names})")
    row = 0
    for batch in handle.iter_batches(batch_size=1024, columns=columns):
        for item in batch.to_pylist():
            row += 1
            if isinstance(item.get("attributes"), list):  # a Parquet map arrives as key/value pairs
                item["attributes"] = dict(item["attributes"])
            yield _checked({k: v for k, v in item.items() if v is not None or k == "history"}, row)


def _csv(path: Path) -> Iterator[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "id" not in fields or "command" not in fields:
            raise InputError(f"{path}: a CSV input needs the columns id and command (found {fields})")
        attribute_columns = [f for f in fields if f not in ("id", "command", "timestamp")]
        current, first_row = None, 0
        for row, record in enumerate(reader, 1):
            if current is not None and record["id"] != current["id"]:
                yield _checked(current, first_row)
                current = None
            if current is None:
                current, first_row = {"id": record["id"], "history": []}, row
                if "timestamp" in fields:
                    current["timestamps"] = []
                if attribute_columns:
                    current["attributes"] = {c: record[c] for c in attribute_columns if record[c] not in ("", None)}
            current["history"].append(record["command"])
            if "timestamp" in fields:
                current["timestamps"].append(record["timestamp"])
        if current is not None:
            yield _checked(current, first_row)
