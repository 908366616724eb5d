import pytest

from cmdrec.schema import ColumnSpec, Schema, Tag


def test_json_round_trip(tmp_path):
    schema = Schema(
        (
            ColumnSpec("command", (Tag.ITEM_ID, Tag.CATEGORICAL, Tag.LIST), "int64", 10, {"pad_id": 0}),
            ColumnSpec("hour", (Tag.CONTINUOUS, Tag.LIST), "float32"),
        )
    )
    schema.to_json(tmp_path / "schema.json")
    loaded = Schema.from_json(tmp_path / "schema.json")
    assert loaded == schema
    assert loaded.item_id.name == "command"
    assert [c.name for c in loaded.select(Tag.CONTINUOUS)] == ["hour"]


def test_duplicate_columns_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Schema((ColumnSpec("a", (), "int64"), ColumnSpec("a", (), "int64")))


def test_unknown_column_names_the_known_ones():
    schema = Schema((ColumnSpec("a", (), "int64"),))
    with pytest.raises(KeyError, match="columns: \\['a'\\]"):
        schema["b"]
