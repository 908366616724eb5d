"""End to end through the `cmdrec` command, as a user runs it."""

import json
import os

import polars as pl
import pytest

from cmdrec.cli import main
from cmdrec.config import load_data_config
from cmdrec.data.synthetic import sample_config
from cmdrec.schema import Schema, Tag


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_quickstart_generates_processes_and_preprocesses(in_tmp, capsys):
    assert main(["quickstart"]) == 0
    printed = capsys.readouterr().out
    assert "drop noise commands" in printed and "vocabulary sizes" in printed
    assert "quickstart-markov test (last item): ndcg@10" in printed and "quickstart-gpt2 test (last item)" in printed
    assert (in_tmp / "runs/quickstart/results.md").is_file()
    suggestions = (
        printed.split("--history Open ZoomExtents Wall Wall Door -k 3\n")[1].splitlines()[0].strip().split(", ")
    )
    assert len(suggestions) == 3 and "<oov>" not in suggestions
    out = in_tmp / "outputs" / "sample" / "preprocessed"
    schema = Schema.from_json(out / "schema.json")
    processing = json.loads((in_tmp / "outputs/sample/processed/processing_report.json").read_text())
    total = 0
    for split in ("train", "valid", "test"):
        frame = pl.read_parquet(out / f"{split}.parquet")
        assert frame.height > 0
        for column in schema.select(Tag.LIST):
            assert (frame[column.name].list.len() == frame["length"]).all()
        assert frame[schema.item_id.name].explode().max() < schema.item_id.cardinality
        total += int(frame["length"].sum())
    # every event that survived processing is in exactly one split
    assert total == processing["after"]["events"]
    assert "Window.Focus" not in processing["after"]["top_commands"]


def test_overrides_reach_the_pipeline(in_tmp, capsys):
    assert main(["sample", "--users", "8"]) == 0
    assert main(["process", "processing.collapse_repeats=true", "processing.max_session_length=5"]) == 0
    report = json.loads((in_tmp / "outputs/sample/processed/processing_report.json").read_text())
    assert [s["step"] for s in report["steps"]][2] == "collapse consecutive repeats"
    assert report["after"]["session_length"]["max"] == 5
    assert report["after"]["repeat_rate"] == 0


def test_bad_input_exits_2_with_a_message(in_tmp, capsys):
    (in_tmp / "log.csv").write_text("user_id,timestamp,command\nu1,not-a-time,A\n")
    assert main(["process", "source.path=log.csv", "catalogue.path=null"]) == 2
    assert "log.csv, row 1, field 'timestamp': cannot parse timestamp 'not-a-time'" in capsys.readouterr().err


def test_preprocess_before_process_says_what_to_do(in_tmp, capsys):
    assert main(["preprocess"]) == 2
    assert "run the process step first" in capsys.readouterr().err


def test_shipped_sample_yaml_matches_the_built_in_sample(request):
    root = request.config.rootpath
    assert load_data_config(root / "configs/data/sample.yaml") == sample_config()


def test_vs_logs_end_to_end(vs_dir, in_tmp, request):
    config = str(request.config.rootpath / "configs/data/vs.yaml")
    overrides = [f"source.path={vs_dir}/BlazeData_Dev_*.csv.gz", f"catalogue.path={vs_dir}/MessageList.csv"]
    assert main(["process", "--config", config, *overrides]) == 0
    assert main(["preprocess", "--config", config, *overrides]) == 0
    report = json.loads((in_tmp / "outputs/vs/processed/processing_report.json").read_text())
    assert report["before"]["events"] == 2_745_281
    assert report["before"]["events"] - sum(s["events_removed"] for s in report["steps"]) == report["after"]["events"]
    assert "View.VisualStudioBgOrFg" not in report["after"]["top_session_ends"]
    assert "View.OnChangeCaretLine" not in report["after"]["top_commands"]


def test_train_evaluate_runs_and_baselines_commands(tiny_data, in_tmp, capsys, request):
    root = request.config.rootpath
    tiny = [
        "model.d_model=16",
        "model.n_layers=1",
        "training.epochs=1",
        "training.batch_size=16",
        "model.max_length=11",
    ]
    assert main(["train", "--config", str(root / "configs/baselines/gpt2.yaml"), f"data_dir={tiny_data}", *tiny]) == 0
    assert "gpt2 test: ndcg@10" in capsys.readouterr().out
    assert main(["evaluate", "runs/gpt2", "positions=all"]) == 0
    assert "gpt2 test (all)" in capsys.readouterr().out
    assert json.loads((in_tmp / "runs/gpt2/evaluation_test_all.json").read_text())["positions_evaluated"] > 0
    configs = [str(root / f"configs/baselines/{name}.yaml") for name in ("markov", "gpt2")]
    assert main(["baselines", "--configs", *configs, "--out", "table", f"data_dir={tiny_data}", *tiny]) == 0
    table = (in_tmp / "table/results.md").read_text()
    assert "| markov |" in table and "| gpt2 |" in table and "all positions" in table
    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert "gpt2" in listing and "finished" in listing


def test_evaluate_a_missing_run_is_a_clear_error(in_tmp, capsys):
    assert main(["evaluate", "runs/nothing"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_compare_and_export_commands_are_wired(in_tmp, capsys):
    from cmdrec.cli import build_parser

    args = build_parser().parse_args(["compare", "data_dir=x", "--seeds", "1", "--out", "r"])
    assert args.seeds == [1] and args.overrides == ["data_dir=x"] and args.full.endswith("mixtral_full.yaml")
    assert main(["export", "runs/none", "--out", "e"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_runs_listing_keeps_long_names_apart_from_their_state(in_tmp, capsys):
    from cmdrec.artifacts.runs import RunDir

    long_name = "mixtral-full-minus-mixture_of_experts-seed1"
    run = RunDir("runs", long_name)
    run.path.mkdir(parents=True)
    run.set_status("finished", step=7, best=0.5)
    assert main(["runs"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert row.split()[:3] == [long_name, "finished", "7"]
    assert header.index("state") == row.index("finished")


def test_overrides_may_follow_options(monkeypatch):
    import cmdrec.serving.service as service

    seen = {}
    monkeypatch.setattr(service, "serve", lambda path, config: seen.update(path=path, config=config))
    assert main(["serve", "bundle", "--port", "9001", "batch_size=8", "max_sessions=10"]) == 0
    assert seen["path"] == "bundle" and seen["config"].port == 9001 and seen["config"].batch_size == 8
    assert main(["serve", "bundle", "nosuchkey=1"]) == 2  # unknown settings are refused
    with pytest.raises(SystemExit):
        main(["serve", "bundle", "--no-such-option"])


def test_runs_looks_into_folders_of_runs_and_shows_the_test_figure(in_tmp, capsys):
    import json as json_module

    from cmdrec.artifacts.runs import RunDir

    run = RunDir("elsewhere/sweeps/study", "trial-0001")
    run.path.mkdir(parents=True)
    run.set_status("finished", step=3, best=0.61, monitor="ndcg@10")
    (run.path / "results.json").write_text(json_module.dumps({"test": {"ndcg@10": 0.5925}}))
    assert main(["runs", "elsewhere"]) == 0  # the folder as an argument, as --runs-dir
    header, row = capsys.readouterr().out.splitlines()
    assert row.split()[:5] == ["sweeps/study/trial-0001", "finished", "3", "0.6100", "0.5925"]
    assert "test" in header and "sweeps " not in header


def test_library_chatter_is_quiet_unless_verbose(in_tmp, monkeypatch):
    import logging

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    assert main(["runs"]) == 0
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("bitsandbytes").level == logging.ERROR
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"


def test_vocab_lists_ids_counts_and_the_commands_mapped_to_oov(tiny_data, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    catalogue = pl.read_parquet(data / "workflow" / "catalogue.parquet")
    extra = catalogue.head(1).with_columns(pl.lit("NeverUsed").alias("command"))
    pl.concat([catalogue, extra]).write_parquet(data / "workflow" / "catalogue.parquet")
    assert main(["vocab", str(data)]) == 0
    out = capsys.readouterr().out
    assert "    2  " in out and "NeverUsed (-> <oov>)" in out and "mapped to the OOV id" in out
    assert main(["vocab", str(data), "--search", "wall"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:-1]
    assert listed and all("wall" in line.lower() for line in listed)
    assert main(["vocab", str(data), "--csv", str(tmp_path / "v.csv")]) == 0
    table = pl.read_csv(tmp_path / "v.csv")
    assert table.columns == ["id", "command", "category", "train_count", "maps_to"]
    assert table.filter(pl.col("command") == "NeverUsed")["id"].to_list() == [1]
    assert main(["vocab", str(tmp_path)]) == 2
    assert "give a preprocessed data directory or a bundle" in capsys.readouterr().err
