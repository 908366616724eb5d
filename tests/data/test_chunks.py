"""Random-length training chunks: sizes, determinism, nothing lost but one-event remainders, and
only the training split cut."""

import dataclasses

import polars as pl

from cmdrec.config import ChunkingConfig
from cmdrec.data.chunks import chunk_sequences
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.sequences import SequenceData
from cmdrec.data.synthetic import sample_config, write_sample


def test_sessions_are_cut_into_seeded_chunks_of_the_sizes_asked():
    lengths = [3, 12, 40, 7]
    frame = pl.DataFrame(
        {
            "session_id": [1, 2, 3, 4],
            "user_id": ["a", "b", "c", "d"],
            "length": lengths,
            "command": [list(range(n)) for n in lengths],
            "position": [[float(i) for i in range(n)] for n in lengths],
        },
        schema_overrides={"length": pl.Int32},
    )
    chunking = ChunkingConfig(min=4, max=6)
    chunked, report = chunk_sequences(frame, chunking, seed=1)
    again, _ = chunk_sequences(frame, chunking, seed=1)
    assert chunked.equals(again) and not chunked.equals(chunk_sequences(frame, chunking, seed=2)[0])
    for session, rows in chunked.group_by("session_id", maintain_order=True):
        commands = [c for part in rows.sort("chunk")["command"].to_list() for c in part]
        original = list(range(lengths[session[0] - 1]))
        assert commands == original[: len(commands)] and len(original) - len(commands) <= 1  # a lone remainder
        assert all(4 <= n <= 6 for n in rows["length"].to_list()[:-1]) and rows["length"].to_list()[-1] >= 2
    assert (chunked["length"] == chunked["command"].list.len()).all()
    assert report == {"sessions": 4, "chunks": chunked.height}


def test_preprocess_cuts_train_only_and_the_chunks_load(tmp_path):
    write_sample(tmp_path / "raw", users=12, sessions_per_user=6, seed=3)
    config = sample_config(str(tmp_path / "raw"), str(tmp_path / "out"))
    process_logs(config)
    plain = preprocess(config)
    whole = {s: pl.read_parquet(tmp_path / "out" / "preprocessed" / f"{s}.parquet") for s in ("train", "test")}
    chunked_config = dataclasses.replace(
        config, features=dataclasses.replace(config.features, chunking=ChunkingConfig(min=3, max=8))
    )
    report = preprocess(chunked_config)["transform"]["train"]["chunking"]
    train = pl.read_parquet(tmp_path / "out" / "preprocessed" / "train.parquet")
    assert report["sessions"] == plain["split"]["train"]["sessions"] and report["chunks"] == train.height
    assert train.height > whole["train"].height and train["length"].max() <= 8
    assert pl.read_parquet(tmp_path / "out" / "preprocessed" / "test.parquet").equals(whole["test"])
    data = SequenceData.load(tmp_path / "out" / "preprocessed", "train", ["command"], 5, "train")
    assert len(data) >= train.height
