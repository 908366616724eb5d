"""Redundant-command mining and the step that drops reviewed pairs, in processing and serving alike."""

from datetime import datetime, timedelta

import polars as pl
import pytest

from cmdrec.config import ProcessingConfig, RedundantConfig
from cmdrec.data.mining import drop_redundant, mine_pairs, write_mined
from cmdrec.data.sessions import clean_history
from cmdrec.errors import InputError


def sessions_frame(sessions):
    start = datetime(2025, 1, 1)
    return pl.DataFrame(
        {
            "session_id": [n for n, s in enumerate(sessions) for _ in s],
            "command": [c for s in sessions for c in s],
            "timestamp": [start + timedelta(seconds=2 * i) for i, _ in enumerate(c for s in sessions for c in s)],
        }
    )


# "Begin" is emitted beside every "Build"; "Edit" and "Save" come together only sometimes
SESSIONS = [["Begin", "Build", "Edit", "Save"], ["Edit", "Begin", "Build"], ["Save", "Edit", "Run"]] * 10


def test_a_command_that_always_accompanies_another_ranks_first():
    pairs = mine_pairs(sessions_frame(SESSIONS), window=1, min_count=5)
    top = pairs.row(0, named=True)
    assert (top["accompanying"], top["main"], top["confidence"]) == ("Begin", "Build", 1.0)
    assert top["together"] == 20 and top["median_gap_seconds"] == pytest.approx(2.0)
    edit_save = pairs.filter((pl.col("accompanying") == "Edit") & (pl.col("main") == "Save")).row(0, named=True)
    assert edit_save["confidence"] < 1 and edit_save["lift"] > 0
    # pairs never cross sessions: Build ends session 2, Save starts session 3
    assert pairs.filter((pl.col("accompanying") == "Build") & (pl.col("main") == "Save")).height == 0


def test_the_mined_table_says_where_commands_removed_by_hand_rank(tmp_path):
    pairs = mine_pairs(sessions_frame(SESSIONS), window=1, min_count=5)
    ranks = write_mined(pairs, tmp_path, top=5, check=("Begin", "Nowhere"))
    assert ranks == {"Begin": {"rank": 1, "confidence": 1.0}, "Nowhere": None}
    text = (tmp_path / "redundant_pairs.md").read_text()
    assert "`Begin`: rank 1" in text and "`Nowhere`: not a candidate" in text
    assert pl.read_parquet(tmp_path / "redundant_pairs.parquet").height == pairs.height


def test_reviewed_pairs_are_dropped_near_their_main_command_in_processing_and_serving():
    config = RedundantConfig(pairs=(("Begin", "Build"),), window=1)
    events = sessions_frame([["Begin", "Build", "Edit", "Begin"], ["Begin", "Save"]])
    kept, per_pair = drop_redundant(events, config)
    assert kept["command"].to_list() == ["Build", "Edit", "Begin", "Begin", "Save"]  # only the Begin beside Build
    assert per_pair == {"Begin with Build": 1}
    processing = ProcessingConfig(redundant=config)
    history = ["Begin", "Build", "Edit", "Begin"]
    indices, removed = clean_history(history, processing, frozenset())
    assert [history[i] for i in indices] == ["Build", "Edit", "Begin"] and removed["redundant"] == 1
    with pytest.raises(InputError, match="each pair is"):
        RedundantConfig(pairs=(("Begin",),))
    with pytest.raises(InputError, match="window must be at least 1"):
        mine_pairs(events, window=0)
