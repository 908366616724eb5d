import math

import polars as pl
import pytest

from cmdrec.config import FeatureConfig
from cmdrec.data.readers import CATEGORY, COMMAND, DESCRIPTION, NO_CATEGORY, USER
from cmdrec.data.sessions import SESSION, split_sessions
from cmdrec.data.workflow import Workflow
from cmdrec.errors import InputError
from cmdrec.schema import OOV_ID, PAD_ID, Tag
from tests.data.helpers import events_frame

CATEGORIES = {"A": "edit", "B": "edit", "C": "view", "D": "view", "NEW": "edit"}
CATALOGUE = pl.DataFrame(
    {COMMAND: list(CATEGORIES), CATEGORY: list(CATEGORIES.values()), DESCRIPTION: [f"does {c}" for c in CATEGORIES]}
)


def sessions(rows):
    return split_sessions(events_frame(rows, CATEGORIES), 30)


TRAIN = sessions(
    [("u1", 0, "A"), ("u1", 1, "B"), ("u1", 3, "A"), ("u2", 0, "A"), ("u2", 2, "C"), ("u2", 3, "D"), ("u2", 4, "D")]
)


def test_categorify_reserves_pad_and_oov_and_orders_by_frequency():
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig())
    fitted = workflow.categorify[COMMAND]
    assert fitted.values == ("A", "D", "B", "C")  # by train count, ties by name
    assert fitted.cardinality == 6
    sequences, _ = workflow.transform(TRAIN)
    assert sequences[COMMAND].to_list() == [[2, 4, 2], [2, 5, 3, 3]]
    assert PAD_ID not in sequences[COMMAND].explode().to_list()


def test_min_count_maps_rare_commands_to_oov():
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig(min_command_count=2))
    assert workflow.categorify[COMMAND].values == ("A", "D")
    sequences, report = workflow.transform(TRAIN)
    assert sequences[COMMAND].to_list() == [[2, OOV_ID, 2], [2, OOV_ID, 3, 3]]
    assert report["oov_events"][COMMAND] == 2


def test_command_seen_only_outside_train_gets_the_oov_id_but_keeps_its_category():
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig())
    valid = sessions([("u3", 0, "A"), ("u3", 1, "NEW")])
    sequences, report = workflow.transform(valid)
    assert sequences[COMMAND].to_list() == [[2, OOV_ID]]
    edit = workflow.categorify[CATEGORY].values.index("edit") + 2
    assert sequences[CATEGORY].to_list() == [[edit, edit]]
    assert report["oov_events"] == {COMMAND: 1, CATEGORY: 0}


def test_catalogue_vocabulary_gives_unseen_catalogue_commands_ids_after_the_seen_ones():
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig(vocabulary="catalogue", min_command_count=2))
    fitted = workflow.categorify[COMMAND]
    assert fitted.values == ("A", "D", "NEW")  # B and C were seen in train below min_count: they stay OOV
    assert fitted.counts == (3, 2, 0)
    sequences, report = workflow.transform(sessions([("u3", 0, "NEW"), ("u3", 1, "B")]))
    assert sequences[COMMAND].to_list() == [[4, OOV_ID]]


def test_normalisation_uses_train_statistics_only():
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig(continuous_columns=("position", "log_time_delta")))
    positions = [0, 1, 2, 0, 1, 2, 3]
    mean = sum(positions) / 7
    std = math.sqrt(sum((p - mean) ** 2 for p in positions) / 6)
    assert workflow.normalize["position"].mean == pytest.approx(mean)
    assert workflow.normalize["position"].std == pytest.approx(std)
    other = sessions([("u9", 0, "A")] + [("u9", i, "B") for i in range(1, 20)])
    sequences, _ = workflow.transform(other)
    assert sequences["position"][0][0] == pytest.approx((0 - mean) / std, rel=1e-5)
    # log time since the previous command: first event 0, then log1p(60 s)
    first = sequences["log_time_delta"][0]
    stats = workflow.normalize["log_time_delta"]
    assert first[0] * stats.std + stats.mean == pytest.approx(0.0, abs=1e-5)
    assert first[1] * stats.std + stats.mean == pytest.approx(math.log1p(60.0), rel=1e-5)


def test_time_features_are_left_out_without_timestamps():
    no_time = split_sessions(events_frame([("u1", None, "A"), ("u1", None, "B")], CATEGORIES), 30)
    workflow = Workflow.fit(no_time, CATALOGUE, FeatureConfig())
    assert tuple(workflow.normalize) == ("position",)


def test_save_load_reapply_gives_identical_output(tmp_path):
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig(min_command_count=2))
    test = sessions([("u3", 0, "A"), ("u3", 1, "NEW"), ("u3", 2, "D")])
    expected, _ = workflow.transform(test)
    workflow.save(tmp_path / "wf")
    loaded = Workflow.load(tmp_path / "wf")
    again, _ = loaded.transform(test)
    assert again.equals(expected)
    assert loaded.output_schema() == workflow.output_schema()


def test_live_request_with_commands_only_gets_metadata_from_the_catalogue(tmp_path):
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig())
    workflow.save(tmp_path / "wf")
    request = split_sessions(events_frame([("live", 0, "C"), ("live", 1, "A")]), 30)  # no category column
    sequences, _ = Workflow.load(tmp_path / "wf").transform(request)
    categories = Workflow.load(tmp_path / "wf").categorify[CATEGORY]
    assert sequences[CATEGORY].to_list() == [[categories.values.index("view") + 2, categories.values.index("edit") + 2]]


def test_schema_tags():
    schema = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig()).output_schema()
    assert schema.item_id.name == COMMAND and schema.item_id.cardinality == 6
    assert schema[CATEGORY].has(Tag.LABEL) and schema[CATEGORY].has(Tag.CATEGORICAL)
    assert {c.name for c in schema.select(Tag.CONTINUOUS)} == {"log_time_delta", "position", "hour", "weekday"}
    assert schema[DESCRIPTION].has(Tag.TEXT)


def test_items_table_lines_up_with_ids():
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig())
    items = workflow.items()
    assert items["name"].to_list()[:3] == ["<pad>", "<oov>", "A"]
    assert items[COMMAND].to_list() == list(range(6))
    assert items["train_count"].to_list() == [0, 0, 3, 2, 1, 1]
    assert items.filter(pl.col("name") == "A")[DESCRIPTION].item() == "does A"


def test_empty_train_is_an_error():
    with pytest.raises(InputError, match="training split is empty"):
        Workflow.fit(TRAIN.clear(), CATALOGUE, FeatureConfig())


def test_load_from_missing_directory(tmp_path):
    with pytest.raises(InputError, match="no saved workflow"):
        Workflow.load(tmp_path)


def test_unknown_category_value_in_live_events_becomes_none_category():
    workflow = Workflow.fit(TRAIN, CATALOGUE, FeatureConfig())
    request = split_sessions(events_frame([("live", 0, "UNLISTED"), ("live", 1, "A")]), 30)
    sequences, report = workflow.transform(request)
    assert report["oov_events"][COMMAND] == 1
    assert NO_CATEGORY not in workflow.categorify[CATEGORY].values
    assert sequences[CATEGORY][0][0] == OOV_ID
    assert sequences[SESSION].to_list() == [1]


def test_an_event_attribute_is_a_categorical_feature_that_requests_must_carry():
    """A log metadata column (here the user's team) is encoded per event like the category, stays out
    of the per-command items table, and a request without it is refused by name."""

    def with_team(frame):
        return frame.with_columns(pl.col(USER).replace_strict({"u1": "core", "u2": "web"}, default="ops").alias("team"))  # noqa: E731

    workflow = Workflow.fit(with_team(TRAIN), CATALOGUE, FeatureConfig(categorical_columns=(CATEGORY, "team")))
    sequences, report = workflow.transform(with_team(sessions([("u1", 0, "A"), ("u1", 1, "B"), ("u9", 0, "C")])))
    core = workflow.categorify["team"].values.index("core") + 2
    assert sequences["team"].to_list() == [[core, core], [OOV_ID]]  # a team unseen in training: OOV, counted
    assert report["oov_events"]["team"] == 1
    assert workflow.output_schema()["team"].has(Tag.CATEGORICAL)
    assert "team" not in workflow.items().columns and workflow.items()[COMMAND].to_list() == list(range(6))
    with pytest.raises(InputError, match=r"events lack column\(s\) \['team'\]"):
        workflow.transform(sessions([("u1", 0, "A")]))
