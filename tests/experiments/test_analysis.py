"""`cmdrec evaluate --analysis`: its figures agree with the evaluation's, and every file is written."""

import csv
import dataclasses

import pytest

from cmdrec.artifacts.loading import load_trained
from cmdrec.config import EvalConfig
from cmdrec.errors import InputError
from cmdrec.experiments.analysis import analyse
from cmdrec.training.evaluate import evaluate_model
from cmdrec.training.loop import train
from tests.conftest import tiny_run


def test_the_analysis_agrees_with_the_evaluation_and_writes_its_files(tiny_data, tmp_path):
    train(tiny_run(tiny_data, tmp_path, "analysed"), show_progress=False)
    model, config = load_trained(tmp_path / "analysed")
    summary = analyse(model, config, "test", tmp_path / "out")
    every_position = evaluate_model(model, config, EvalConfig(positions="all", ks=(10,)), "test")
    assert summary["predictions"] == every_position["positions_evaluated"]
    bins = summary["by_history_length"]
    assert sum(row["positions"] for row in bins) == summary["predictions"]
    recall = sum(row["recall@10"] * row["positions"] for row in bins) / summary["predictions"]
    assert recall == pytest.approx(every_position["recall@10"], abs=1e-3)
    with (tmp_path / "out" / "category_confusion.csv").open() as handle:
        rows = list(csv.reader(handle))[1:]
    assert sum(int(v) for row in rows for v in row[1:]) == summary["predictions"]
    categories = summary["next_3_categories"]
    assert 0 < categories["precision"] <= 1 and 0 < categories["recall"] <= 1 and categories["positions"] > 0
    for name in ("analysis.json", "by_history_length.png", "category_confusion.png", "most_missed.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    missed = summary["most_missed"]
    assert missed and all(0 < row["miss_rate"] <= 1 for row in missed)


def test_the_analysis_needs_a_causal_model(tiny_data, tmp_path):
    train(tiny_run(tiny_data, tmp_path, "bert", model={"backbone": "bert", "masking": "mlm"}), show_progress=False)
    model, config = load_trained(tmp_path / "bert")
    with pytest.raises(InputError, match="needs a clm"):
        analyse(model, dataclasses.replace(config), "test", tmp_path / "out")
