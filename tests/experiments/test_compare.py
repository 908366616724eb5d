import json
import shutil

import pytest
import transformers

from cmdrec.config import TextConfig
from cmdrec.errors import InputError
from cmdrec.experiments.compare import run_compare
from cmdrec.text.pipeline import embed_commands
from tests.conftest import tiny_run
from tests.text.test_text import CountingProvider


def test_compare_writes_table_ablation_buckets_and_plots(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    embed_commands(data, TextConfig(cache_dir=str(tmp_path / "cache")), CountingProvider())
    full = tiny_run(
        data,
        tmp_path,
        "full",
        model={
            "backbone": "mixtral",
            "input_features": ("category", "position"),
            "fusion": "attention",
            "aux_tasks": ("category",),
            "text_embeddings": True,
            "history_copy": True,
        },
        training={"epochs": 1},
    )
    full = full.__class__(**{**full.__dict__, "loss": full.loss.__class__(name="focal")})
    baselines = [
        tiny_run(data, tmp_path, "markov", model={"backbone": "markov"}),
        tiny_run(data, tmp_path, "gpt2", training={"epochs": 1}),
    ]
    report = run_compare(full, baselines, seeds=[1, 2], out_dir=tmp_path / "report", ablation_seeds=[1])
    roles = {name: entry["role"] for name, entry in report["models"].items()}
    assert roles["full"] == "full" and roles["markov"] == roles["gpt2"] == "baseline"
    assert sorted(n for n, r in roles.items() if r == "ablation") == sorted(
        f"full - {m}"
        for m in ("fusion", "multi-task", "focal loss", "mixture of experts", "text embeddings", "history copy")
    )
    for entry in report["models"].values():
        assert set(entry["seeds"]) == ({1} if entry["role"] == "ablation" else {1, 2}) and entry["std"]["ndcg@10"] >= 0
        assert {"head", "torso", "tail"} <= set(entry["buckets_mean"])
    assert report["summary"]["best_baseline"] in ("markov", "gpt2")
    written = json.loads((tmp_path / "report/compare.json").read_text())
    assert written["summary"] == json.loads(json.dumps(report["summary"]))
    table = (tmp_path / "report/compare.md").read_text()
    assert (
        "| full - focal loss | ablation | 1 |" in table
        and "| gpt2 | baseline | 2 |" in table
        and "by command-frequency bucket" in table
    )
    for png in ("ndcg10.png", "buckets.png", "learning_curves.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    # where the full model and the best baseline go wrong, in the report
    analysed = report["analysis"]
    assert set(analysed) == {"full", report["summary"]["best_baseline"]}
    assert all(entry["by_history_length"] and entry["most_missed"] for entry in analysed.values())
    assert "## Where they go wrong" in table and "| history length | NDCG@10 |" in table
    assert (tmp_path / "report/analysis/full/category_confusion.png").is_file()


def test_compare_without_ablation_seeds_has_no_ablation_rows(tiny_data, tmp_path):
    full = tiny_run(
        tiny_data,
        tmp_path,
        "full",
        model={"input_features": ("category",), "fusion": "attention"},
        training={"epochs": 1},
    )
    report = run_compare(
        full,
        [tiny_run(tiny_data, tmp_path, "markov", model={"backbone": "markov"})],
        seeds=[1],
        out_dir=tmp_path / "report",
        ablation_seeds=[],
    )
    assert {name: entry["role"] for name, entry in report["models"].items()} == {"full": "full", "markov": "baseline"}
    assert report["ablation_seeds"] == [] and report["summary"]["best_baseline"] == "markov"
    assert (
        report["machine"]["transformers"] == transformers.__version__
    )  # a figure names the library releases it came from


def test_compare_runs_the_named_ablations_only_and_refuses_unknown_ones(tiny_data, tmp_path):
    full = tiny_run(
        tiny_data,
        tmp_path,
        "full",
        model={"input_features": ("category",), "fusion": "attention", "history_copy": True},
        training={"epochs": 1},
    )
    report = run_compare(
        full, [], seeds=[1], out_dir=tmp_path / "report", ablation_seeds=[1], ablations=["history copy"]
    )
    assert {name: entry["role"] for name, entry in report["models"].items()} == {
        "full": "full",
        "full - history copy": "ablation",
    }
    with pytest.raises(InputError, match="unknown module.*'copy'"):
        run_compare(full, [], seeds=[1], out_dir=tmp_path / "report", ablations=["copy"])


def test_compare_with_parallel_jobs_reports_what_one_job_does(tiny_data, tmp_path):
    full = tiny_run(
        tiny_data,
        tmp_path,
        "full",
        model={"input_features": ("category",), "fusion": "attention"},
        training={"epochs": 1},
    )
    baselines = [
        tiny_run(tiny_data, tmp_path, "gpt2", training={"epochs": 1}),
        tiny_run(tiny_data, tmp_path, "markov", model={"backbone": "markov"}),
    ]
    one = run_compare(full, baselines, seeds=[1, 2], out_dir=tmp_path / "one", ablation_seeds=[])
    parallel = run_compare(full, baselines, seeds=[1, 2], out_dir=tmp_path / "parallel", ablation_seeds=[], jobs=3)
    assert {n: e["mean"] for n, e in parallel["models"].items()} == {n: e["mean"] for n, e in one["models"].items()}
    with pytest.raises(InputError, match="jobs: 0 must be at least 1"):
        run_compare(full, baselines, seeds=[1], out_dir=tmp_path / "none", jobs=0)


def test_each_model_keeps_one_colour_across_the_pictures():
    from cmdrec.experiments.compare import model_colours

    names = ["mixtral-full", "mixtral-full - fusion", "llama", "markov"]
    colours = model_colours(names)
    assert colours["mixtral-full"] == "tab:red" and len(set(colours.values())) == len(names)
    assert model_colours(names) == colours  # the bars, the buckets and the learning curves ask the same


def test_the_dense_ablation_of_the_shipped_mixture_of_experts_config_resolves():
    from pathlib import Path

    from cmdrec.config import load_run_config
    from cmdrec.experiments.compare import _without
    from cmdrec.models.build import resolve_sections

    shipped = load_run_config(Path(__file__).resolve().parents[2] / "configs/full/mixtral_full.yaml")
    dense = resolve_sections(_without(shipped, "mixture of experts").model)
    assert dense.backbone == "llama" and dense.experts is None and dense.layers == shipped.model.layers
