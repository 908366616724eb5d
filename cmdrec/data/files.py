"""Load one tabular file (CSV, CSV.gz, Parquet, JSONL) into a polars frame of its raw columns.

Every frame gets a `_row` column (1-based data row in the file) so later checks can name the
offending row. Bad rows either raise an InputError naming file and row, or, with
`skip_bad_rows`, are dropped and counted in the returned `LoadReport`.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cmdrec.errors import InputError, located

ROW = "_row"
SUPPORTED_SUFFIXES = (
    ".csv",
    ".csv.gz",
    ".tsv",
    ".tsv.gz",
    ".txt",
    ".txt.gz",
    ".parquet",
    ".jsonl",
    ".jsonl.gz",
    ".ndjson",
)


@dataclass
class LoadReport:
    files: int = 0
    rows_read: int = 0
    bad_rows: dict[str, int] = field(default_factory=dict)  # reason -> count
    examples: list[str] = field(default_factory=list)
    stripped: dict[str, int] = field(default_factory=dict)  # column -> values with whitespace stripped

    def skip(self, reason: str, where: str) -> None:
        self.bad_rows[reason] = self.bad_rows.get(reason, 0) + 1
        if len(self.examples) < 10:
            self.examples.append(where)

    def merge(self, other: LoadReport) -> None:
        self.files += other.files
        self.rows_read += other.rows_read
        for mine, theirs in ((self.bad_rows, other.bad_rows), (self.stripped, other.stripped)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.examples.extend(other.examples[: 10 - len(self.examples)])

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "rows_read": self.rows_read,
            "bad_rows_skipped": self.bad_rows,
            "examples": self.examples,
            "values_stripped": self.stripped,
        }


# suffix -> a function reading one file of that kind into a table of text columns (one row per event)
READERS: dict[str, Callable[[Path], pl.DataFrame]] = {}


def register_reader(suffixes: tuple[str, ...], read: Callable[[Path], pl.DataFrame]) -> None:
    """Read files ending in `suffixes` with `read(path)`. What it returns goes through the same
    checks as a CSV's rows (columns named by `source.*_column`, timestamps, empty values), and its rows
    are numbered from 1 in error messages; an exception it raises is reported naming the file."""
    taken = [s for s in suffixes if s in READERS or s in SUPPORTED_SUFFIXES]
    if taken:
        raise InputError(f"files ending in {taken} have a reader already")
    READERS.update(dict.fromkeys(suffixes, read))


def _read_registered(path: Path, read: Callable[[Path], pl.DataFrame]) -> pl.DataFrame:
    try:
        frame = read(path)
    except InputError:
        raise
    except Exception as error:  # a reader of someone else's format: say which file it failed on
        raise InputError(located(path, f"the reader {getattr(read, '__name__', read)!r} failed: {error}")) from error
    if not isinstance(frame, pl.DataFrame):
        raise InputError(located(path, f"the reader returned {type(frame).__name__}, not a polars DataFrame"))
    return _numbered(frame.with_columns(pl.col(c).cast(pl.Utf8) for c in frame.columns))


def resolve_paths(pattern: str) -> list[Path]:
    """A file, every supported file in a directory, or the files matching a glob, sorted."""
    path = Path(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((*SUPPORTED_SUFFIXES, *READERS)))
    else:
        found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not found:
        raise InputError(f"no input files found at '{pattern}'")
    return found


def read_table(
    path: Path,
    report: LoadReport,
    skip_bad_rows: bool,
    separator: str = ",",
    header: bool = True,
    column_names: list[str] | None = None,
) -> pl.DataFrame:
    name = path.name
    registered = next((read for suffix, read in READERS.items() if name.endswith(suffix)), None)
    if registered is not None:
        frame = _read_registered(path, registered)
    elif name.endswith(".parquet"):
        frame = _read_parquet(path)
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        raw = _read_text_bytes(path)
        frame = _read_jsonl_native(raw)
        if frame is None:
            frame = _read_jsonl(path, raw, report, skip_bad_rows)
    else:
        if name.endswith((".tsv", ".tsv.gz")):
            separator = "\t"
        frame = _read_csv_native(path, separator, header, column_names)
        if frame is None:
            frame = _read_csv(path, _read_text_bytes(path), report, skip_bad_rows, separator, header, column_names)
    if frame.height == 0:
        raise InputError(located(path, "no data rows"))
    report.files += 1
    report.rows_read += frame.height
    return frame


# Well-formed files (the common case) go through polars' native readers, strict; a file they refuse
# is read again by the diagnostic path below, which names the row and field at fault or skips it.


def _read_csv_native(path: Path, separator: str, header: bool, column_names) -> pl.DataFrame | None:
    if path.name.endswith(".gz"):
        with open(path, "rb") as file:
            if file.read(2) != b"\x1f\x8b":
                return None  # not gzip at all: polars would read the bytes as text
    try:
        frame = pl.read_csv(
            path, separator=separator, has_header=header, new_columns=column_names, infer_schema=False, quote_char='"'
        )
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, ValueError):
        return None
    return _numbered(frame) if frame.height else None  # no rows: the diagnostic path says why


def _read_jsonl_native(raw: bytes) -> pl.DataFrame | None:
    if b"\n\n" in raw or raw.startswith(b"\n"):
        return None  # blank lines: polars would number the rows after them differently from the file
    try:
        inferred = pl.read_ndjson(io.BytesIO(raw), infer_schema_length=None)
        if inferred.height == 0 or any(dtype.is_nested() for dtype in inferred.dtypes):
            return None  # nested values are kept as JSON text, as the diagnostic path writes them
        # read again as text: a number keeps the digits it was written with (1 stays "1" beside 2.5)
        frame = pl.read_ndjson(io.BytesIO(raw), schema=dict.fromkeys(inferred.columns, pl.Utf8))
    except (pl.exceptions.PolarsError, ValueError):
        return None
    return _numbered(frame)


def _numbered(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))


def _read_text_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise InputError(located(path, f"not a readable gzip file ({error})")) from error
    if not raw.strip():
        raise InputError(located(path, "file is empty"))
    return raw


def _split_invalid_utf8(path: Path, raw: bytes, report: LoadReport, skip_bad_rows: bool, header: bool) -> bytes:
    """Return `raw` unchanged when it is valid UTF-8; otherwise raise, or drop the bad lines."""
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        pass
    lines = raw.split(b"\n")
    kept = []
    for number, line in enumerate(lines, start=0 if header else 1):
        try:
            line.decode("utf-8")
            kept.append(line)
        except UnicodeDecodeError as error:
            message = f"bytes are not valid UTF-8 (byte 0x{line[error.start]:02x} at column {error.start + 1})"
            if number == 0 or not skip_bad_rows:
                row = None if number == 0 else number
                where = "header: " if number == 0 else ""
                raise InputError(located(path, where + message, row=row)) from None
            report.skip("invalid UTF-8", located(path, message, row=number))
            kept.append(None)
    # Keep a placeholder row number for dropped lines so later row numbers still match the file.
    return b"\n".join(line if line is not None else b"\x00SKIPPED\x00" for line in kept)


def _read_csv(path, raw, report, skip_bad_rows, separator, header, column_names) -> pl.DataFrame:
    raw = _split_invalid_utf8(path, raw, report, skip_bad_rows, header)
    if b"\x00SKIPPED\x00" not in raw:
        try:
            frame = pl.read_csv(
                io.BytesIO(raw),
                separator=separator,
                has_header=header,
                new_columns=column_names,
                infer_schema=False,
                quote_char='"',
            )
            return frame.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
        except (pl.exceptions.ComputeError, pl.exceptions.NoDataError):
            pass  # ragged or otherwise malformed rows: find them row by row below
    return _read_csv_row_by_row(path, raw, report, skip_bad_rows, separator, header, column_names)


def _read_csv_row_by_row(path, raw, report, skip_bad_rows, separator, header, column_names) -> pl.DataFrame:
    reader = csv.reader(io.StringIO(raw.decode("utf-8")), delimiter=separator)
    if header:
        try:
            names = next(reader)
        except StopIteration:
            raise InputError(located(path, "file is empty")) from None
    else:
        names = column_names
    names = column_names or names
    records, rows = [], []
    for number, fields in enumerate(reader, start=1):
        if fields == ["\x00SKIPPED\x00"]:
            continue
        if not fields:
            report.skip("blank line", located(path, "blank line", row=number))
            continue
        if len(fields) != len(names):
            message = (
                f"expected {len(names)} fields ({', '.join(names)}), found {len(fields)}: "
                f"{separator.join(fields)[:120]!r}"
            )
            if not skip_bad_rows:
                raise InputError(located(path, message, row=number))
            report.skip("wrong number of fields", located(path, message, row=number))
            continue
        records.append(fields)
        rows.append(number)
    if not records:
        raise InputError(located(path, "no data rows"))
    columns = {name: [r[i] for r in records] for i, name in enumerate(names)}
    return pl.DataFrame({ROW: rows, **columns}, schema={ROW: pl.Int64, **{n: pl.Utf8 for n in names}})


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as error:  # polars raises several types for corrupt files
        raise InputError(located(path, f"not a readable Parquet file ({error})")) from error
    return frame.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))


def _read_jsonl(path, raw, report, skip_bad_rows) -> pl.DataFrame:
    raw = _split_invalid_utf8(path, raw, report, skip_bad_rows, header=False)
    records, rows = [], []
    for number, line in enumerate(raw.decode("utf-8").split("\n"), start=1):
        if line == "\x00SKIPPED\x00" or not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a line must hold one JSON object")
        except ValueError as error:
            message = f"not a JSON object ({error})"
            if not skip_bad_rows:
                raise InputError(located(path, message, row=number)) from None
            report.skip("invalid JSON", located(path, message, row=number))
            continue
        records.append(record)
        rows.append(number)
    if not records:
        raise InputError(located(path, "no data rows"))
    names = list(dict.fromkeys(key for record in records for key in record))
    data = {name: [_as_text(record.get(name)) for record in records] for name in names}
    return pl.DataFrame({ROW: rows, **data}, schema={ROW: pl.Int64, **{n: pl.Utf8 for n in names}})


def _as_text(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------- written tables


def table_parts(directory: Path, name: str) -> list[Path]:
    """The files of table `name` in `directory`: `name.parquet`, or the shards `name/part-*.parquet`."""
    single = directory / f"{name}.parquet"
    if single.is_file():
        return [single]
    return sorted((directory / name).glob("part-*.parquet"))


def read_table_parts(directory: Path, name: str, columns: list[str] | None = None) -> pl.DataFrame:
    parts = table_parts(directory, name)
    if not parts:
        raise InputError(f"no {name} table at {directory / name}.parquet or {directory / name}/part-*.parquet")
    frames = [pl.read_parquet(p, columns=columns) for p in parts]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
