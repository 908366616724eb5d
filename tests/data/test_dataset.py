import ast
import shutil
from pathlib import Path

import polars as pl
import pytest

from cmdrec.data import dataset
from cmdrec.data.dataset import COMMAND_LABELS, PreparedDataset
from cmdrec.errors import InputError
from cmdrec.schema import OOV_ID, ColumnSpec, Schema, Tag

PACKAGE = Path(__file__).resolve().parents[2] / "cmdrec"
FILE_NAMES = {  # the module's file and folder names (its other constants, such as column names, are not)
    value
    for name, value in vars(dataset).items()
    if name.isupper() and isinstance(value, str) and ("." in value or name.endswith("_DIR"))
}


def test_preprocessing_writes_what_the_dataset_names(tiny_data):
    prepared = PreparedDataset(tiny_data)
    for path in (prepared.schema_path, prepared.items_path, prepared.processing_path, prepared.report_path):
        assert path.is_file(), path
    assert prepared.schema() == prepared.workflow().output_schema()
    items = prepared.items()
    assert items["command"].to_list() == list(range(items.height))


def test_lookup_columns_are_added_and_removed_through_the_dataset(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    prepared = PreparedDataset(data)
    before = prepared.schema_path.read_text()
    label = ColumnSpec("llm_kind", (Tag.CATEGORICAL, Tag.LIST, Tag.LABEL), "int64", 3, {"table": COMMAND_LABELS})
    table = pl.DataFrame({"command": [0, 1], "llm_kind": [0, 1]})
    prepared.write_lookup_columns(COMMAND_LABELS, [label], table)
    assert prepared.schema().names[-1] == "llm_kind" and prepared.command_labels_path.is_file()
    prepared.write_lookup_columns(COMMAND_LABELS, [], None)
    assert prepared.schema_path.read_text() == before and not prepared.command_labels_path.exists()


def test_vocabulary_lists_catalogue_commands_without_an_id_as_oov(tiny_data):
    table = PreparedDataset(tiny_data).vocabulary()
    with_ids = table.filter(pl.col("maps_to").is_null())
    assert with_ids["id"].to_list() == sorted(with_ids["id"].to_list())
    assert set(table.filter(pl.col("maps_to").is_not_null())["id"].to_list()) <= {OOV_ID}


def test_a_directory_that_is_not_prepared_is_named(tmp_path):
    with pytest.raises(InputError, match=f"no schema.json in {tmp_path}; run preprocessing first"):
        PreparedDataset(tmp_path).schema()
    with pytest.raises(InputError, match="no items.parquet"):
        PreparedDataset(tmp_path).items()
    assert not PreparedDataset(tmp_path).exists()


def test_no_other_module_spells_a_data_file_name_or_writes_a_schema():
    """The dataset module owns every file name of a data directory and is the one writer of schema.json."""
    spelled, writers = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "dataset.py" and path.parent.name == "data":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in FILE_NAMES:
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "to_json":
                writers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not spelled, spelled
    assert not writers, writers  # Schema.to_json is called from the dataset module alone


def test_a_schema_round_trips_through_its_file(tmp_path):
    schema = Schema((ColumnSpec("command", (Tag.ITEM_ID, Tag.CATEGORICAL), "int64", 4),))
    schema.to_json(tmp_path / "schema.json")
    assert PreparedDataset(tmp_path).schema() == schema
