from datetime import datetime, timedelta

import polars as pl

from cmdrec.data.readers import CATEGORY, COMMAND, ORDER, TIME, USER


def events_frame(rows: list[tuple[str, float | None, str]], categories: dict[str, str] | None = None) -> pl.DataFrame:
    """Canonical events from (user, minutes since a fixed start or None, command) rows."""
    start = datetime(2024, 1, 1, 9, 0, 0)
    frame = pl.DataFrame(
        {
            USER: [r[0] for r in rows],
            TIME: [None if r[1] is None else start + timedelta(minutes=r[1]) for r in rows],
            COMMAND: [r[2] for r in rows],
            ORDER: list(range(1, len(rows) + 1)),
        },
        schema={USER: pl.Utf8, TIME: pl.Datetime("us"), COMMAND: pl.Utf8, ORDER: pl.Int64},
    )
    if categories is not None:
        frame = frame.with_columns(pl.col(COMMAND).replace_strict(categories, default="<none>").alias(CATEGORY))
    return frame
