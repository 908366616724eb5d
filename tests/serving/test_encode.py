"""The lean request path equals the feature workflow (Workflow.transform + SequenceData.from_frame),
and the history cleaning equals the processing step."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cmdrec.config import ProcessingConfig
from cmdrec.data.dataset import WORKFLOW_DIR
from cmdrec.data.readers import COMMAND, ORDER, TIME, USER
from cmdrec.data.sequences import SequenceData, load_schema
from cmdrec.data.sessions import SESSION, clean_history, process_events
from cmdrec.data.workflow import Workflow
from cmdrec.serving.encode import HistoryEncoder

COMMANDS = ["Wall", "Door", "Window", "Window.Focus", "NoSuchCommand", "Undo"]


def reference(workflow, schema, columns, data_dir, window, histories, times, developers):
    events = pl.DataFrame(
        {
            USER: [str(i) for i, h in enumerate(histories) for _ in h],
            SESSION: [i for i, h in enumerate(histories) for _ in h],
            COMMAND: [c for h in histories for c in h],
            TIME: [t for ts in times for t in ts],
            "developer_id": [d for d, h in zip(developers, histories, strict=True) for _ in h],
        },
        schema_overrides={TIME: pl.Datetime("us"), SESSION: pl.Int64, "developer_id": pl.Utf8},
    )
    sequences, _ = workflow.transform(events)
    data = SequenceData.from_frame(sequences, schema, columns, window, "eval", data_dir=data_dir)
    return data.batch(np.arange(len(data)))


def test_the_lean_encoder_equals_the_workflow_with_time_categories_and_attributes(tiny_data_with_developer):
    data_dir = tiny_data_with_developer
    workflow, schema = Workflow.load(data_dir / WORKFLOW_DIR), load_schema(data_dir)
    columns = ["command", "category", "developer_id", "log_time_delta", "position", "hour", "weekday"]
    encoder = HistoryEncoder(workflow, schema, columns, data_dir, window=5)
    rng = np.random.default_rng(0)
    start = datetime(2025, 3, 7, 23, 58, 30, 123456)
    histories, times = [], []
    for length in (1, 3, 8, 12):
        histories.append([COMMANDS[i] for i in rng.integers(0, len(COMMANDS), length)])
        gaps = np.cumsum(rng.integers(0, 400_000_000, length))  # microseconds, ties included
        times.append([start + timedelta(microseconds=int(g)) for g in gaps])
    developers = ["1", "2", "unknown-developer", None]
    expected = reference(workflow, schema, columns, data_dir, 5, histories, times, developers)
    actual = encoder.encode(histories, times, [{"developer_id": d} for d in developers])
    assert torch.equal(actual.padding_mask, expected.padding_mask)
    for name in columns:
        assert actual.features[name].dtype == expected.features[name].dtype, name
        assert torch.equal(actual.features[name], expected.features[name]), name


@settings(max_examples=60, deadline=None)
@given(
    commands=st.lists(st.sampled_from(["A", "B", "C", "Noise"]), min_size=1, max_size=25),
    collapse=st.booleans(),
    max_length=st.sampled_from([None, 3]),
)
def test_cleaning_a_history_keeps_what_processing_keeps_and_leaves_a_clean_one_unchanged(
    commands, collapse, max_length
):
    config = ProcessingConfig(noise_commands=("Noise",), collapse_repeats=collapse, min_session_length=1,
                              max_session_length=max_length)  # fmt: skip
    events = pl.DataFrame(
        {USER: ["u"] * len(commands), TIME: [datetime(2025, 1, 1)] * len(commands),
         ORDER: list(range(len(commands))), COMMAND: commands},
        schema_overrides={TIME: pl.Datetime("us")},
    )  # fmt: skip
    expected = process_events(events, config)[0][COMMAND].to_list()
    keep, removed = clean_history(commands, config, frozenset({"Noise"}))
    assert [commands[i] for i in keep] == expected
    assert sum(removed.values()) == len(commands) - len(keep)
    assert clean_history(expected, config, frozenset({"Noise"}))[0] == list(range(len(expected)))


def test_times_with_an_offset_get_hour_and_weekday_of_their_local_clock_and_deltas_in_utc(tiny_data_with_developer):
    from datetime import timezone

    data_dir = tiny_data_with_developer
    workflow, schema = Workflow.load(data_dir / WORKFLOW_DIR), load_schema(data_dir)
    columns = ["command", "log_time_delta", "hour", "weekday"]
    encoder = HistoryEncoder(workflow, schema, columns, data_dir, window=5)
    plus_two = timezone(timedelta(hours=2))
    local = [datetime(2025, 3, 9, 23, 30, tzinfo=plus_two), datetime(2025, 3, 10, 0, 10, tzinfo=plus_two)]
    as_naive_local = [t.replace(tzinfo=None) for t in local]  # the wall clock, as processing keeps it
    as_utc = [t.astimezone(timezone.utc) for t in local]  # the same moments written in UTC
    aware = encoder.encode([["Wall", "Door"]], [local], [{}])
    naive = encoder.encode([["Wall", "Door"]], [as_naive_local], [{}])
    utc = encoder.encode([["Wall", "Door"]], [as_utc], [{}])
    for name in ("hour", "weekday", "log_time_delta"):
        assert torch.equal(aware.features[name], naive.features[name]), name
    assert torch.equal(aware.features["log_time_delta"], utc.features["log_time_delta"])
    assert not torch.equal(aware.features["hour"], utc.features["hour"])
