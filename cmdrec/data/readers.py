"""Read command logs of any supported shape into one canonical event table.

Canonical columns: `user_id` (str), `timestamp` (datetime or null), `event_index` (int, the
order of the row in the input, which breaks timestamp ties and defines order when there are no
timestamps), `command` (str), an optional given `session_key`, then the metadata columns asked for.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import polars as pl

from cmdrec.config import CatalogueConfig, SourceConfig
from cmdrec.data.files import ROW, LoadReport, read_table, resolve_paths
from cmdrec.errors import InputError, located

USER = "user_id"
TIME = "timestamp"
ORDER = "event_index"
COMMAND = "command"
SESSION_KEY = "session_key"
CATEGORY = "category"
DESCRIPTION = "description"
NO_CATEGORY = "<none>"

# The Visual Studio interaction logs (ABB Developer Interaction Logs, Damevski et al., TSE 2016).
VS_SOURCE = SourceConfig(
    format="events",
    path="BlazeData_Dev_*.csv.gz",
    user_column="developer_id",
    command_column="message",
    timestamp_column="timestamp",
    timestamp_format="%Y-%m-%d %H:%M:%S",
)
VS_CATALOGUE = CatalogueConfig(
    path="MessageList.csv",
    command_column="message",
    category_column="category",
    description_column=None,
    metadata_columns=(),
    null_values=("", "NULL", "NA"),
    describe_from_name=True,
)


def read_events(config: SourceConfig) -> tuple[pl.DataFrame, LoadReport]:
    """Read every file of a source into the canonical event table, in input order."""
    report = LoadReport()
    frames, offset = [], 0
    for path in resolve_paths(config.path):
        frame = _read_one(path, config, report)
        frames.append(frame.with_columns((pl.col(ROW) + offset).alias(ORDER)).drop(ROW))
        offset += frame.height
    return pl.concat(frames, how="vertical"), report


def read_vs_logs(directory: str | Path, on_bad_rows: str = "error") -> tuple[pl.DataFrame, pl.DataFrame, LoadReport]:
    """The Visual Studio logs of a directory and their `MessageList.csv` catalogue."""
    directory = Path(directory)
    events, report = read_events(replace(VS_SOURCE, path=str(directory / VS_SOURCE.path), on_bad_rows=on_bad_rows))
    catalogue = read_catalogue(replace(VS_CATALOGUE, path=str(directory / VS_CATALOGUE.path)))
    return events, catalogue, report


def _read_one(path: Path, config: SourceConfig, report: LoadReport) -> pl.DataFrame:
    skip = config.on_bad_rows == "skip"
    if config.format == "user_item":
        raw = read_table(path, report, skip, separator=" ", header=False, column_names=[USER, COMMAND])
        frame = raw.select(ROW, USER, COMMAND, pl.lit(None, dtype=pl.Datetime("us")).alias(TIME))
        return _drop_or_fail_nulls(frame, path, {USER: USER, COMMAND: COMMAND}, skip, report)

    raw = read_table(path, report, skip)
    wanted = _required_columns(
        raw,
        path,
        {
            USER: config.user_column,
            COMMAND: config.command_column,
            TIME: config.timestamp_column,
            SESSION_KEY: config.session_column,
            **{name: name for name in config.metadata_columns},
        },
    )

    frame = raw.select(
        ROW,
        *[pl.col(source).cast(pl.Utf8).alias(name) for name, source in wanted.items() if name != TIME],
        *([pl.col(config.timestamp_column).alias(TIME)] if config.timestamp_column else []),
    )
    frame = _drop_or_fail_nulls(frame, path, {USER: config.user_column, COMMAND: config.command_column}, skip, report)
    if config.timestamp_column:
        frame = _parse_timestamps(frame, path, config, skip, report)
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias(TIME))
    return frame.select(ROW, USER, TIME, COMMAND, *[c for c in frame.columns if c not in (ROW, USER, TIME, COMMAND)])


def _required_columns(raw: pl.DataFrame, path: Path, mapping: dict[str, str | None]) -> dict[str, str]:
    """Canonical name -> file column for the configured (non-None) columns; all must exist in the file."""
    wanted = {name: source for name, source in mapping.items() if source}
    missing = [source for source in wanted.values() if source not in raw.columns]
    if missing:
        raise InputError(
            located(path, f"missing column(s) {missing}; the file has {[c for c in raw.columns if c != ROW]}")
        )
    return wanted


def _drop_or_fail_nulls(frame, path, fields: dict[str, str], skip: bool, report: LoadReport) -> pl.DataFrame:
    for name, source in fields.items():
        empty = frame.filter(pl.col(name).is_null() | (pl.col(name).str.strip_chars() == ""))
        if empty.height == 0:
            continue
        if not skip:
            raise InputError(located(path, "value is empty", row=int(empty[ROW][0]), field=source))
        for row in empty[ROW].to_list():
            report.skip(f"empty {source}", located(path, "value is empty", row=row, field=source))
        frame = frame.filter(~pl.col(ROW).is_in(empty[ROW].implode()))
    return frame


def _parse_timestamps(frame, path, config: SourceConfig, skip: bool, report: LoadReport) -> pl.DataFrame:
    column = frame[TIME]
    if column.dtype.is_temporal():
        parsed = column.cast(pl.Datetime("us"))
    elif column.dtype.is_numeric():
        parsed = (column.cast(pl.Float64) * 1e6).cast(pl.Int64).cast(pl.Datetime("us"))
    else:
        text = column.cast(pl.Utf8).str.strip_chars()
        if config.timestamp_format:
            parsed = text.str.strptime(pl.Datetime("us"), config.timestamp_format, strict=False)
        elif text.str.contains(r"^-?\d+(\.\d+)?$").all():
            parsed = (text.cast(pl.Float64) * 1e6).cast(pl.Int64).cast(pl.Datetime("us"))
        else:
            parsed = text.str.to_datetime(time_unit="us", strict=False, time_zone=None)
    bad = frame.filter(parsed.is_null())
    if bad.height:
        expected = f" (expected format {config.timestamp_format!r})" if config.timestamp_format else ""
        if not skip:
            raise InputError(
                located(
                    path,
                    f"cannot parse timestamp {bad[TIME][0]!r}{expected}",
                    row=int(bad[ROW][0]),
                    field=config.timestamp_column,
                )
            )
        for row, value in zip(bad[ROW].to_list(), bad[TIME].to_list(), strict=False):
            report.skip(
                "unparsable timestamp",
                located(path, f"cannot parse timestamp {value!r}", row=row, field=config.timestamp_column),
            )
    return frame.with_columns(parsed.alias(TIME)).filter(pl.col(TIME).is_not_null())


# ---------------------------------------------------------------- catalogue


def read_catalogue(config: CatalogueConfig) -> pl.DataFrame:
    """The command catalogue as `command`, `category`, `description` and metadata columns."""
    if config.path is None:
        raise InputError("catalogue.path is not set")
    path = resolve_paths(config.path)[0]
    raw = read_table(path, LoadReport(), skip_bad_rows=False)
    wanted = _required_columns(
        raw,
        path,
        {
            COMMAND: config.command_column,
            CATEGORY: config.category_column,
            DESCRIPTION: config.description_column,
            **{name: name for name in config.metadata_columns},
        },
    )
    nulls = list(config.null_values)
    frame = raw.select(
        ROW,
        *[
            pl.when(pl.col(source).cast(pl.Utf8).is_in(nulls))
            .then(None)
            .otherwise(pl.col(source).cast(pl.Utf8))
            .alias(name)
            for name, source in wanted.items()
        ],
    )
    empty = frame.filter(pl.col(COMMAND).is_null())
    if empty.height:
        raise InputError(located(path, "command is empty", row=int(empty[ROW][0]), field=config.command_column))
    repeated = frame.filter(pl.col(COMMAND).is_duplicated()).sort(COMMAND, ROW)
    if repeated.height:
        first = repeated.row(0, named=True)
        rows = repeated.filter(pl.col(COMMAND) == first[COMMAND])[ROW].to_list()
        raise InputError(
            located(
                path, f"command {first[COMMAND]!r} is listed more than once (rows {rows})", field=config.command_column
            )
        )
    if CATEGORY not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(CATEGORY))
    frame = frame.with_columns(pl.col(CATEGORY).fill_null(NO_CATEGORY))
    if DESCRIPTION not in frame.columns:
        if config.describe_from_name:
            descriptions = [
                describe_command(c, k)
                for c, k in zip(frame[COMMAND].to_list(), frame[CATEGORY].to_list(), strict=False)
            ]
            frame = frame.with_columns(pl.Series(DESCRIPTION, descriptions, dtype=pl.Utf8))
        else:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(DESCRIPTION))
    return frame.drop(ROW)


def describe_command(command: str, category: str | None) -> str:
    """A plain-words description from a dotted, camel-cased command name:
    'Edit.GoToDefinition' -> 'edit: go to definition'."""
    parts = [re.sub(r"(?<=[a-z0-9])(?=[A-Z])|_", " ", part).strip().lower() for part in command.split(".")]
    text = parts[0] + (": " + " ".join(parts[1:]) if len(parts) > 1 else "")
    if category and category != NO_CATEGORY:
        text += f" (category {category})"
    return text


def join_catalogue(events: pl.DataFrame, catalogue: pl.DataFrame, config: CatalogueConfig) -> tuple[pl.DataFrame, dict]:
    """Attach per-command metadata to events; report commands missing on either side."""
    used = set(events[COMMAND].unique().to_list())
    listed = set(catalogue[COMMAND].to_list())
    not_listed = sorted(used - listed)
    never_used = sorted(listed - used)
    events_not_listed = int(events.filter(pl.col(COMMAND).is_in(not_listed)).height) if not_listed else 0
    if not_listed and config.on_unknown_commands == "error":
        raise InputError(
            located(
                config.path,
                f"{len(not_listed)} command(s) in the log are not in the catalogue, e.g. {not_listed[:5]}",
                field=config.command_column,
            )
        )
    columns = [c for c in catalogue.columns if c != DESCRIPTION]
    joined = events.join(catalogue.select(columns), on=COMMAND, how="left").with_columns(
        pl.col(CATEGORY).fill_null(NO_CATEGORY)
    )
    report = {
        "commands_in_log_not_in_catalogue": len(not_listed),
        "events_with_commands_not_in_catalogue": events_not_listed,
        "examples_not_in_catalogue": not_listed[:10],
        "commands_in_catalogue_never_used": len(never_used),
        "examples_never_used": never_used[:10],
    }
    return joined, report


def bare_catalogue(events: pl.DataFrame) -> pl.DataFrame:
    """A catalogue with no metadata, for logs that come without one."""
    commands = events[COMMAND].unique().sort()
    return pl.DataFrame(
        {COMMAND: commands, CATEGORY: [NO_CATEGORY] * len(commands), DESCRIPTION: [None] * len(commands)},
        schema={COMMAND: pl.Utf8, CATEGORY: pl.Utf8, DESCRIPTION: pl.Utf8},
    )
