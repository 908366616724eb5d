"""Read command logs of any supported shape into one canonical event table.

Canonical columns: `user_id` (str), `timestamp` (datetime or null), `event_index` (int, the
order of the row in the input, which breaks timestamp ties and defines order when there are no
timestamps), `command` (str), an optional given `session_key`, then the metadata columns asked for.
"""

from __future__ import annotations

import re
from datetime import datetime
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
LOCAL_TIME = "local_time"  # wall clock where the event happened, when the log gives UTC offsets
CATEGORY = "category"
DESCRIPTION = "description"
NO_CATEGORY = "<none>"


def read_events(config: SourceConfig) -> tuple[pl.DataFrame, LoadReport]:
    """Read every file of a source into the canonical event table, in input order."""
    report = LoadReport()
    frames, offset = [], 0
    for path in resolve_paths(config.path):
        frame = read_source_file(path, config, report)
        frames.append(frame.with_columns((pl.col(ROW) + offset).alias(ORDER)).drop(ROW))
        offset += frame.height
    return concat_events(frames), report


def concat_events(frames: list[pl.DataFrame]) -> pl.DataFrame:
    # files differ only in whether their times carried offsets (a `local_time` column)
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def read_source_file(path: Path, config: SourceConfig, report: LoadReport) -> pl.DataFrame:
    """One file of a source as canonical events with its file row numbers (`_row`)."""
    skip = config.on_bad_rows == "skip"
    if config.format == "user_item":
        raw = read_table(path, report, skip, separator=" ", header=False, column_names=[USER, COMMAND])
        frame = raw.select(ROW, USER, COMMAND, pl.lit(None, dtype=pl.Datetime("us")).alias(TIME))
        frame = _clean_text(frame, path, {USER: USER, COMMAND: COMMAND}, config, report)
        return _drop_or_fail_bad_values(frame, path, {USER: USER, COMMAND: COMMAND}, skip, report)

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
    nested = [source for source in wanted.values() if raw.schema[source].is_nested()]
    if nested:
        raise InputError(
            located(
                path, f"column(s) {nested} hold lists or structs ({raw.schema[nested[0]]}); expected one value per row"
            )
        )

    frame = raw.select(
        ROW,
        *[pl.col(source).cast(pl.Utf8).alias(name) for name, source in wanted.items() if name != TIME],
        *([pl.col(config.timestamp_column).alias(TIME)] if config.timestamp_column else []),
    )
    text_fields = {name: source for name, source in wanted.items() if name != TIME}
    frame = _clean_text(frame, path, text_fields, config, report)
    identity = {USER: config.user_column, COMMAND: config.command_column}
    if config.session_column:
        identity[SESSION_KEY] = config.session_column  # a missing key would silently split its session
    frame = _drop_or_fail_bad_values(frame, path, identity, skip, report)
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


def _clean_text(frame: pl.DataFrame, path, fields: dict[str, str], config, report: LoadReport) -> pl.DataFrame:
    """Strip surrounding whitespace (counted per field) and read the configured null markers as missing."""
    nulls = list(config.null_values)
    for name, source in fields.items():
        column = pl.col(name)
        # the tests run on the distinct values (a log repeats its commands and users millions of times);
        # the rows are rewritten only when one needs it
        values, rewrite = frame[name].unique(), False
        if config.strip_whitespace:
            padded = values.filter(values.str.contains(r"^\s|\s$"))
            if padded.len():
                changed = frame.select(column.is_in(padded.implode()).sum()).item()
                report.stripped[source] = report.stripped.get(source, 0) + changed
                column, values, rewrite = column.str.strip_chars(), values.str.strip_chars(), True
        if values.is_in(nulls).any():
            column, rewrite = pl.when(column.is_in(nulls)).then(None).otherwise(column), True
        if rewrite:
            frame = frame.with_columns(column.alias(name))
    return frame


CONTROL_CHARACTER = r"[\x00-\x08\x0b-\x1f\x7f]"


def _drop_or_fail_bad_values(frame, path, fields: dict[str, str], skip: bool, report: LoadReport) -> pl.DataFrame:
    """Missing values and control characters (a NUL inside a command name) in identity fields are bad rows."""
    for name, source in fields.items():
        values = frame[name].unique()
        for problem, bad, found in (
            ("value is empty", pl.col(name).is_null() | (pl.col(name) == ""), values.is_null() | (values == "")),
            (
                "value contains a control character",
                pl.col(name).str.contains(CONTROL_CHARACTER),
                values.str.contains(CONTROL_CHARACTER),
            ),
        ):
            if not found.any():  # tested on the distinct values; the rows are searched only when one is bad
                continue
            rows = frame.filter(bad)
            if not skip:
                detail = "" if problem == "value is empty" else f": {rows[name][0]!r}"
                raise InputError(located(path, problem + detail, row=int(rows[ROW][0]), field=source))
            reason = f"empty {source}" if problem == "value is empty" else f"control character in {source}"
            for row in rows[ROW].to_list():
                report.skip(reason, located(path, problem, row=row, field=source))
            frame = frame.filter(~bad)
    return frame


EPOCH_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}  # -> microseconds
EARLIEST, LATEST = datetime(1971, 1, 1), datetime(2100, 1, 1)
OFFSET = r"(Z|[+-]\d\d:?\d\d)$"


def _parse_timestamps(frame, path, config: SourceConfig, skip: bool, report: LoadReport) -> pl.DataFrame:
    """Parse to naive UTC. Times with a UTC offset also keep their local wall clock (`local_time`),
    from which hour of day and weekday are computed: 09:00+01:00 is a morning, not 08:00."""
    column = frame[TIME]
    local = None
    if column.dtype.is_temporal():
        parsed = column.cast(pl.Datetime("us"))
    elif column.dtype.is_numeric():
        parsed = _from_epoch(column, config.timestamp_unit)
    else:
        text = column.cast(pl.Utf8).str.strip_chars()
        if config.timestamp_format:
            parsed = text.str.strptime(pl.Datetime("us"), config.timestamp_format, strict=False)
        elif text.str.contains(r"^-?\d+(\.\d+)?$").all():
            parsed = _from_epoch(text.cast(pl.Float64), config.timestamp_unit)
        else:
            with_offset = text.str.contains(OFFSET)
            if with_offset.any() and not with_offset.all():
                row = int(frame.filter(~with_offset)[ROW][0])
                raise InputError(
                    located(
                        path,
                        "some times carry a UTC offset and others do not; give every time an offset, or none",
                        row=row,
                        field=config.timestamp_column,
                    )
                )
            parsed = text.str.to_datetime(time_unit="us", strict=False, time_zone=None)
            if with_offset.any():  # parsed to UTC; the naive column holds UTC like every other log's
                parsed = parsed.dt.replace_time_zone(None)
                local = text.str.replace(OFFSET, "").str.to_datetime(time_unit="us", strict=False, time_zone=None)
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
    out_of_range = parsed.is_not_null() & ((parsed < EARLIEST) | (parsed >= LATEST))
    if out_of_range.any():
        outside = frame.filter(out_of_range)
        hint = ""
        if not column.dtype.is_temporal() and not config.timestamp_format:
            hint = f"; epoch numbers are read in source.timestamp_unit={config.timestamp_unit!r}: is that their unit?"
        # an out-of-range time is a misread column, not one bad row: never skipped
        year = parsed.filter(out_of_range).dt.year()[0]
        raise InputError(
            located(
                path,
                f"timestamp {outside[TIME][0]!r} reads as a time in the year {year}, outside 1971-2100{hint}",
                row=int(outside[ROW][0]),
                field=config.timestamp_column,
            )
        )
    frame = frame.with_columns(parsed.alias(TIME))
    if local is not None:
        frame = frame.with_columns(local.alias(LOCAL_TIME))
    return frame.filter(pl.col(TIME).is_not_null())


def _from_epoch(numbers: pl.Series, unit: str) -> pl.Series:
    if numbers.dtype.is_integer():
        scale = EPOCH_UNITS[unit]
        micros = numbers.cast(pl.Int64) * scale if scale >= 1 else numbers.cast(pl.Int64) // 1000
    else:
        micros = (numbers.cast(pl.Float64) * EPOCH_UNITS[unit]).cast(pl.Int64)
    return micros.cast(pl.Datetime("us"))


# ---------------------------------------------------------------- catalogue


def read_catalogue(config: CatalogueConfig, report: LoadReport | None = None) -> pl.DataFrame:
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
    frame = raw.select(ROW, *[pl.col(source).cast(pl.Utf8).alias(name) for name, source in wanted.items()])
    frame = _clean_text(frame, path, wanted, config, LoadReport() if report is None else report)
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
    report = catalogue_report(events[COMMAND].value_counts(), catalogue, config)
    return attach_catalogue(events, catalogue), report


def attach_catalogue(events: pl.DataFrame, catalogue: pl.DataFrame) -> pl.DataFrame:
    columns = [c for c in catalogue.columns if c != DESCRIPTION]
    return events.join(catalogue.select(columns), on=COMMAND, how="left").with_columns(
        pl.col(CATEGORY).fill_null(NO_CATEGORY)
    )


def catalogue_report(command_counts: pl.DataFrame, catalogue: pl.DataFrame, config: CatalogueConfig) -> dict:
    """Commands missing on either side, from the log's (command, count) table; with
    `on_unknown_commands: error`, commands the catalogue lacks are refused."""
    listed = set(catalogue[COMMAND].to_list())
    not_listed = command_counts.filter(~pl.col(COMMAND).is_in(list(listed)))
    names = sorted(not_listed[COMMAND].to_list())
    never_used = sorted(listed - set(command_counts[COMMAND].to_list()))
    if names and config.on_unknown_commands == "error":
        raise InputError(
            located(
                config.path,
                f"{len(names)} command(s) in the log are not in the catalogue, e.g. {names[:5]}",
                field=config.command_column,
            )
        )
    return {
        "commands_in_log_not_in_catalogue": len(names),
        "events_with_commands_not_in_catalogue": int(not_listed["count"].sum()),
        "examples_not_in_catalogue": names[:10],
        "commands_in_catalogue_never_used": len(never_used),
        "examples_never_used": never_used[:10],
    }


def bare_catalogue(commands: pl.Series) -> pl.DataFrame:
    """A catalogue with no metadata, for logs that come without one."""
    commands = commands.unique().sort()
    return pl.DataFrame(
        {COMMAND: commands, CATEGORY: [NO_CATEGORY] * len(commands), DESCRIPTION: [None] * len(commands)},
        schema={COMMAND: pl.Utf8, CATEGORY: pl.Utf8, DESCRIPTION: pl.Utf8},
    )
