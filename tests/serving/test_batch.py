"""Batch prediction over files: the same suggestions as the predictor, bad rows reported by number."""

import json

import polars as pl
import pytest

from cmdrec.cli import main
from cmdrec.serving import Predictor
from cmdrec.serving.batch import predict_file
from cmdrec.training.loop import train
from tests.conftest import tiny_run


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    train(tiny_run(tiny_data, root, "gpt2", training={"epochs": 1}), show_progress=False)
    return root / "gpt2"


HISTORIES = [["Wall", "Door"], ["Open", "Wall", "Window", "Door"], ["Window"]]


def test_jsonl_parquet_and_csv_inputs_give_the_predictors_suggestions(run, tmp_path):
    expected = [a.commands for a in Predictor(run).recommend_many(HISTORIES, k=4)]
    jsonl = tmp_path / "h.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"h{i}", "history": h}) + "\n" for i, h in enumerate(HISTORIES)))
    parquet = tmp_path / "h.parquet"
    pl.DataFrame({"id": [f"h{i}" for i in range(3)], "history": HISTORIES}).write_parquet(parquet)
    csv = tmp_path / "h.csv"
    csv.write_text("id,command\n" + "".join(f"h{i},{c}\n" for i, h in enumerate(HISTORIES) for c in h))
    for source in (jsonl, parquet, csv):
        out = tmp_path / f"{source.suffix[1:]}.parquet"
        report = predict_file(Predictor(run), source, out, k=4, chunk_size=2, show_progress=False)
        assert report == {"histories": 3, "scored": 3, "bad_rows": 0, "errors": []}
        frame = pl.read_parquet(out)
        assert frame["suggestions"].to_list() == expected and frame["id"].to_list() == ["h0", "h1", "h2"]


def test_bad_rows_are_reported_by_row_number_and_the_rest_is_scored(run, tmp_path, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_text(
        json.dumps({"history": ["Wall"]}) + "\n"
        + "{not json\n"
        + json.dumps({"history": []}) + "\n"
        + json.dumps({"history": ["Wall"], "timestamps": ["later"]}) + "\n"
        + json.dumps({"history": "Wall"}) + "\n"
        + json.dumps({"history": ["Door"], "colour": "red"}) + "\n"
        + json.dumps({"history": ["Door", "Wall"]}) + "\n"
    )  # fmt: skip
    out = tmp_path / "out.parquet"
    assert main(["predict", str(run), "--input", str(source), "--output", str(out), "-k", "3"]) == 0
    frame = pl.read_parquet(out)
    assert frame["row"].to_list() == [1, 2, 3, 4, 5, 6, 7]
    errors = frame["error"].to_list()
    assert errors[0] is None and errors[6] is None and all(errors[1:6])
    assert "line: not a JSON object" in errors[1] and "timestamps[0]" in errors[3] and "colour" in errors[5]
    printed = capsys.readouterr()
    assert "scored 2 of 7 histories" in printed.out and "row 2: line" in printed.err
    assert main(["predict", str(run), "--input", str(tmp_path / "none.jsonl"), "--output", str(out)]) == 2
