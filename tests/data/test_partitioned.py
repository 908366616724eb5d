"""A log processed in partitions of users (the streaming path), by polars one partition at a time or
as Dask tasks on a local cluster, gives the same sessions, ids, splits, statistics and sequences as
the whole log processed in memory."""

import dataclasses
import json
import math

import numpy as np
import polars as pl
import pytest

from cmdrec.config import load_data_config
from cmdrec.data.files import read_table_parts, table_parts
from cmdrec.data.partitioned import partition_count
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.sequences import SequenceData
from cmdrec.data.splits import SPLITS
from cmdrec.data.synthetic import sample_config, write_sample

ORDER = ["user_id", "timestamp", "event_index"]


def run(config, root, name, **processing):
    config = dataclasses.replace(
        config,
        processing=dataclasses.replace(config.processing, **processing),
        processed_dir=str(root / name / "processed"),
        preprocessed_dir=str(root / name / "preprocessed"),
    )
    return config, process_logs(config), preprocess(config)


def assert_same_outputs(config, root, whole, parts):
    (one, processed_one, preprocessed_one), (many, processed_many, preprocessed_many) = whole, parts
    events = read_table_parts(root / one / "processed", "events")
    sharded = read_table_parts(root / many / "processed", "events")
    assert len(table_parts(root / many / "processed", "events")) > 1
    assert events.equals(sharded.sort(ORDER))  # same sessions with the same ids
    for key in ("read", "catalogue", "steps", "before", "after"):
        assert processed_one[key] == processed_many[key], key
    for key in ("split", "vocabulary", "continuous", "transform"):
        assert preprocessed_one[key] == preprocessed_many[key], key
    for split in SPLITS:
        expected = read_table_parts(root / one / "preprocessed", split)
        actual = read_table_parts(root / many / "preprocessed", split).sort("session_id")
        assert expected.equals(actual), split
    schema_one = json.loads((root / one / "preprocessed" / "schema.json").read_text())
    schema_many = json.loads((root / many / "preprocessed" / "schema.json").read_text())
    for a, b in zip(schema_one["columns"], schema_many["columns"], strict=True):
        # normalisation moments reduced over partitions: equal to the last few bits of a double
        for key in ("mean", "std"):
            if key in a["properties"]:
                assert math.isclose(a["properties"].pop(key), b["properties"].pop(key), rel_tol=1e-12)
        assert a == b
    items = [pl.read_parquet(root / name / "preprocessed" / "items.parquet") for name in (one, many)]
    assert items[0].equals(items[1])


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("partitioned")
    write_sample(root / "raw", users=30, sessions_per_user=6, seed=5)
    return root, sample_config(str(root / "raw"), str(root / "unused"))


@pytest.mark.parametrize("method", ["random_session", "balanced", "time", "user", "leave_one_out"])
def test_partitions_give_the_outputs_of_the_whole_log_in_memory(sample, method):
    root, config = sample
    balanced = method == "balanced"
    split = dataclasses.replace(
        config.split, method="random_session" if balanced else method, balance_commands=balanced
    )
    config = dataclasses.replace(config, split=split)
    config = dataclasses.replace(config, features=dataclasses.replace(config.features, holdout_commands=("Print",)))
    whole = run(config, root, f"{method}-one", partitions=1)
    parts = run(config, root, f"{method}-four", partitions=4)
    assert whole[1]["partitions"]["count"] == 1 and parts[1]["partitions"]["count"] == 4
    assert_same_outputs(config, root, (f"{method}-one", *whole[1:]), (f"{method}-four", *parts[1:]))


def test_sharded_splits_load_as_one_file_does(sample):
    root, config = sample
    run(config, root, "load-one", partitions=1)
    run(config, root, "load-three", partitions=3)
    columns = ["command", "category", "log_time_delta", "position"]
    for split in SPLITS:
        one = SequenceData.load(root / "load-one" / "preprocessed", split, columns, 8, "eval")
        three = SequenceData.load(root / "load-three" / "preprocessed", split, columns, 8, "eval")
        assert len(one) == len(three)
        a, b = one.batch(np.arange(len(one))), three.batch(np.arange(len(three)))
        assert all(a.features[c].equal(b.features[c]) for c in ["command", "category", "position"])
        assert (a.features["log_time_delta"] - b.features["log_time_delta"]).abs().max() < 1e-6


def test_rerunning_with_another_layout_leaves_one_layout(sample):
    root, config = sample
    run(config, root, "relayout", partitions=3)
    _, processed, _ = run(config, root, "relayout", partitions=1)
    assert table_parts(root / "relayout" / "processed", "events") == [
        root / "relayout" / "processed" / "events.parquet"
    ]
    assert not (root / "relayout" / "processed" / "events").exists()
    assert not (root / "relayout" / "preprocessed" / "train").exists()
    assert not (root / "relayout" / "processed" / ".scratch").exists()
    assert processed["partitions"]["files"] == ["events.parquet"]


def test_given_session_ids_and_skipped_rows_are_kept_across_partitions(tmp_path):
    rows = ["user,sid,time,cmd"]
    rng = np.random.default_rng(0)
    for user in range(20):
        for event in range(30):
            rows.append(f"u{user},{user}-{event // 7},2024-01-01 10:{event:02d}:00,C{rng.integers(0, 6)}")
    rows.insert(40, "u1,oops")  # a bad row, skipped and counted
    (tmp_path / "raw").mkdir()
    for part in range(3):  # several files: event order runs across them
        body = rows[1:][part * 200 : (part + 1) * 200 + (1 if part == 2 else 0)]
        (tmp_path / "raw" / f"log{part}.csv").write_text("\n".join([rows[0], *body]) + "\n")
    config = load_data_config(
        None,
        [
            f"source.path={tmp_path}/raw",
            "source.user_column=user",
            "source.command_column=cmd",
            "source.timestamp_column=time",
            "source.session_column=sid",
            "source.on_bad_rows=skip",
            "processing.noise_commands=[C0]",
            "processing.collapse_repeats=true",
        ],
    )
    whole = run(config, tmp_path, "one", partitions=1)
    parts = run(config, tmp_path, "five", partitions=5)
    assert sum(whole[1]["read"]["bad_rows_skipped"].values()) == 1
    assert_same_outputs(config, tmp_path, ("one", *whole[1:]), ("five", *parts[1:]))


def test_partition_count_follows_the_memory_budget(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"x" * 1_000_000)
    config = load_data_config(None, [f"source.path={path}", "processing.memory_budget_gb=0.002"])
    assert partition_count(config) == math.ceil(8_000_000 / (0.002 * 2**30))
    assert (
        partition_count(dataclasses.replace(config, processing=dataclasses.replace(config.processing, partitions=7)))
        == 7
    )
    big_budget = load_data_config(None, [f"source.path={path}"])
    assert partition_count(big_budget) == 1


def test_the_dask_engine_on_a_local_cluster_gives_the_polars_outputs(sample):
    pytest.importorskip("distributed")
    root, config = sample
    whole = run(config, root, "dask-one", partitions=1)
    parts = run(config, root, "dask-three", partitions=3, engine="dask", dask_workers=2)
    assert parts[1]["partitions"]["engine"] == "dask"
    assert_same_outputs(config, root, ("dask-one", *whole[1:]), ("dask-three", *parts[1:]))


@pytest.mark.vs_data
def test_vs_logs_in_partitions_and_on_dask_equal_the_logs_in_memory(vs_dir, tmp_path):
    pytest.importorskip("distributed")
    overrides = [f"source.path={vs_dir}/BlazeData_Dev_*.csv.gz", f"catalogue.path={vs_dir}/MessageList.csv"]
    config = load_data_config("configs/data/vs.yaml", overrides)
    assert partition_count(config) == 1  # the default: the VS logs fit the memory budget
    whole = run(config, tmp_path, "one", partitions=None)
    for name, settings in (("polars", {}), ("dask", {"engine": "dask", "dask_workers": 2})):
        parts = run(config, tmp_path, name, partitions=4, **settings)
        assert_same_outputs(config, tmp_path, ("one", *whole[1:]), (name, *parts[1:]))


def test_the_report_says_how_sessions_were_cut_and_that_there_was_no_catalogue(tmp_path):
    from cmdrec.report import format_processing

    (tmp_path / "log.csv").write_text("user,sid,cmd\nu1,a, Open\nu1,a,Save\nu1,b,Open\nu1,b,Close\n")
    config = load_data_config(
        None,
        [
            f"source.path={tmp_path}/log.csv",
            "source.user_column=user",
            "source.command_column=cmd",
            "source.timestamp_column=null",
            "source.session_column=sid",
            f"processed_dir={tmp_path}/out",
        ],
    )
    report = process_logs(config)
    assert report["steps"][0]["step"] == "split sessions (given session ids)"
    text = format_processing(report, str(tmp_path / "out"))
    assert "catalogue: none given" in text and "not in the catalogue" not in text
    assert "whitespace stripped: {'cmd': 1}" in text
