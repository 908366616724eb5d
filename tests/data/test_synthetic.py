"""The scalable synthetic log (`cmdrec sample --events N`): exact size, shards, determinism, and a
log the pipeline reads as it reads the bundled sample."""

import polars as pl
import pytest

from cmdrec.config import load_data_config
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.synthetic import COMMANDS, NOISE_COMMAND, write_large_sample


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_a_large_sample_is_written_in_shards_of_the_size_asked(tmp_path, file_format):
    shards = write_large_sample(tmp_path, 20_000, file_format, shard_events=7_000, seed=1)
    assert len(shards) == 3 and all(p.parent == tmp_path / "events" for p in shards)
    events = pl.concat([pl.read_parquet(p) if file_format == "parquet" else pl.read_csv(p) for p in shards])
    assert events.height == 20_000
    assert set(events["command"].unique()) <= {*COMMANDS, NOISE_COMMAND}
    assert events["user_id"].n_unique() > 1
    catalogue = pl.read_csv(tmp_path / "catalogue.csv")
    assert set(catalogue["command"]) == {*COMMANDS, NOISE_COMMAND}


def test_the_large_sample_is_seeded_and_processes_like_the_small_one(tmp_path):
    write_large_sample(tmp_path / "a", 30_000, shard_events=10_000, seed=3)
    write_large_sample(tmp_path / "b", 30_000, shard_events=10_000, seed=3)
    first = pl.read_parquet(tmp_path / "a" / "events" / "*.parquet")
    assert first.equals(pl.read_parquet(tmp_path / "b" / "events" / "*.parquet"))
    # people keep working in order: every user's clock only moves forward
    assert first.group_by("user_id").agg(pl.col("timestamp").diff().min() >= 0)["timestamp"].all()
    config = load_data_config(
        "configs/data/sample.yaml",
        [
            f"source.path={tmp_path}/a/events",
            f"catalogue.path={tmp_path}/a/catalogue.csv",
            "source.timestamp_format=null",
            f"processed_dir={tmp_path}/out/processed",
            f"preprocessed_dir={tmp_path}/out/preprocessed",
            "processing.partitions=2",
        ],
    )
    report = process_logs(config)
    noise = next(s for s in report["steps"] if s["step"] == "drop noise commands")
    assert 0.03 < noise["events_removed"] / 30_000 < 0.09  # the focus changes the preset removes
    assert report["after"]["session_length"]["p50"] >= 5  # tasks of several commands
    assert report["catalogue"]["commands_in_log_not_in_catalogue"] == 0
    assert preprocess(config)["split"]["train"]["sessions"] > 0
