from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from cmdrec.cli import main
from cmdrec.data.masking import mask_batch
from cmdrec.data.sequences import SequenceData, load_schema
from cmdrec.errors import InputError, RequestError
from cmdrec.features.embeddings import mask_ids
from cmdrec.models.build import model_columns
from cmdrec.models.tokens import first_commands, score_next_commands
from cmdrec.serving import Predictor
from cmdrec.training.loop import train
from tests.conftest import tiny_run


def trained(tiny_data, runs_dir, name, **model):
    config = tiny_run(tiny_data, runs_dir, name, model=model, training={"epochs": 1})
    train(config, show_progress=False)
    return runs_dir / name


def command_names(data_dir):
    return pl.read_parquet(data_dir / "items.parquet").sort("command")["name"].to_list()


@pytest.mark.parametrize(
    "model",
    [
        {"backbone": "gpt2"},
        {"backbone": "bert", "masking": "mlm"},
        {"backbone": "markov"},
        {"backbone": "gpt2", "input_features": ["category"]},
        {"backbone": "gpt2", "history_copy": True},
    ],
)
def test_a_suggestion_equals_the_evaluation_of_the_same_history(tiny_data, tmp_path, model):
    assert_suggestions_equal_evaluation(Predictor(trained(tiny_data, tmp_path, "run", **model)), tiny_data)


def test_an_event_attribute_reaches_the_model_and_a_history_without_it_is_refused(tiny_data_with_developer, tmp_path):
    predictor = Predictor(trained(tiny_data_with_developer, tmp_path, "run", input_features=["developer_id"]))
    assert predictor.needs_attributes == ["developer_id"]
    with pytest.raises(InputError, match=r"event attribute\(s\) \['developer_id'\].*--attribute developer_id=VALUE"):
        predictor.recommend(["Wall", "Door"])
    with pytest.raises(
        InputError, match=r"attributes.developer: unknown event attribute; this model's data has \['developer_id'\]"
    ):
        predictor.recommend(
            ["Wall", "Door"], attributes={"developer_id": "1", "developer": "1"}
        )  # a typo is refused, not dropped
    developers = pl.read_parquet(tiny_data_with_developer / "test.parquet")[
        "user_id"
    ].to_list()  # the sample's developer is its user
    assert_suggestions_equal_evaluation(predictor, tiny_data_with_developer, [{"developer_id": d} for d in developers])
    one, other = (
        predictor.recommend(["Wall", "Door"], attributes={"developer_id": d}).scores
        for d in sorted(set(developers))[:2]
    )
    assert one != other  # the developer reaches the model
    run = str(tmp_path / "run")
    assert main(["recommend", run, "--history", "Wall", "Door", "--attribute", f"developer_id={developers[0]}"]) == 0
    assert main(["recommend", run, "--history", "Wall", "--attribute", "developer_id"]) == 2  # "expected NAME=VALUE"


def assert_suggestions_equal_evaluation(predictor, data_dir, attributes=None):
    schema, config = load_schema(data_dir), predictor.config
    columns = model_columns(config.model, schema)
    data = SequenceData.load(data_dir, "test", columns, config.model.window_length, "eval")
    batch = data.batch(np.arange(len(data)))
    masked = mask_batch(batch, config.model.masking, ["command"], training=False, mask_ids=mask_ids(schema, columns))
    scores, _, _ = score_next_commands(predictor.model, masked, first_commands(schema), data.token_extensions)
    expected = scores.float().topk(5, dim=1)
    # the full sessions, as a live caller would send them: every event before the evaluated one (a
    # workflow token stands for its commands)
    names = command_names(data_dir)
    item = schema.item_id.properties
    parts = {item["commands"] + i: p for i, p in enumerate(item.get("workflow_tokens", []))}
    sessions = pl.read_parquet(data_dir / "test.parquet")["command"].to_list()
    histories = [[names[c] for i in session[:-1] for c in parts.get(i, [i])] for session in sessions]
    answers = predictor.recommend_many(histories, k=5, attributes=attributes)
    for answer, ids, values in zip(answers, expected.indices, expected.values, strict=False):
        assert answer.commands == [names[i] for i in ids.tolist()]
        assert answer.scores == pytest.approx(values.tolist(), rel=1e-5, abs=1e-5)


def test_unknown_commands_are_read_as_out_of_vocabulary_and_named(tiny_data, tmp_path):
    predictor = Predictor(trained(tiny_data, tmp_path, "run"))
    answer = predictor.recommend(["Wall", "NoSuchCommand", "Door"], k=4)
    assert answer.unknown_commands == ["NoSuchCommand"]
    assert len(answer.commands) == 4 and "<oov>" not in answer.commands and "<pad>" not in answer.commands
    assert answer.scores == sorted(answer.scores, reverse=True)


def test_exclude_seen_never_suggests_a_command_of_the_history(tiny_data, tmp_path):
    predictor = Predictor(trained(tiny_data, tmp_path, "run"))
    history = ["Wall", "Door", "Window", "Wall"]
    answer = predictor.recommend(history, k=10, exclude_seen=True)
    assert not set(answer.commands) & set(history)
    assert set(history) & set(predictor.recommend(history, k=30).commands)  # they would rank otherwise
    everything = predictor.recommend(history, k=1000, exclude_seen=True).commands
    assert len(everything) == len(predictor.names) - 2 - 3  # every command but the 3 seen, no reserved id


def test_time_features_need_timestamps(tiny_data, tmp_path):
    predictor = Predictor(trained(tiny_data, tmp_path, "run", input_features=["log_time_delta", "hour"]))
    with pytest.raises(InputError, match="timestamp"):
        predictor.recommend(["Wall", "Door"])
    start = datetime(2025, 3, 6, 9, 0)
    late = predictor.recommend(["Wall", "Door"], timestamps=[start, start + timedelta(hours=3)])
    soon = predictor.recommend(["Wall", "Door"], timestamps=[start, start + timedelta(seconds=3)])
    assert len(late.commands) == 10 and late.scores != soon.scores  # the gap reaches the model
    with pytest.raises(InputError, match="2 commands but 1 timestamps"):
        predictor.recommend(["Wall", "Door"], timestamps=[start])


def test_an_empty_history_is_refused(tiny_data, tmp_path):
    with pytest.raises(InputError, match="history: expected a non-empty list"):
        Predictor(trained(tiny_data, tmp_path, "run")).recommend([])


def test_the_recommend_command_prints_ranked_suggestions(tiny_data, tmp_path, capsys):
    run = trained(tiny_data, tmp_path, "run")
    assert main(["recommend", str(run), "--history", "Wall", "Door", "-k", "3"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert "logit" in header and "not a probability" in header  # scores are said to be raw
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    assert [line.split()[1] for line in lines] == Predictor(run).recommend(["Wall", "Door"], k=3).commands
    assert main(["recommend", str(run), "--history", "Wall", "--timestamps", "not-a-time"]) == 2


@pytest.mark.parametrize("k", [-1, 0, "5", 2.5, True, [3]])
def test_k_must_be_a_positive_integer(tiny_data, tmp_path, k):
    with pytest.raises(RequestError, match="k: expected a positive integer") as error:
        Predictor(trained(tiny_data, tmp_path, "run")).recommend(["Wall"], k=k)
    assert error.value.field == "k"


def test_timestamps_out_of_order_or_missing_are_refused_naming_the_event(tiny_data, tmp_path):
    predictor = Predictor(trained(tiny_data, tmp_path, "run"))
    start = datetime(2025, 3, 6, 9, 0)
    with pytest.raises(RequestError, match=r"timestamps\[2\]: .* is earlier than the event before it"):
        predictor.recommend(["Wall", "Door", "Wall"], timestamps=[start, start + timedelta(minutes=2), start])
    with pytest.raises(RequestError, match=r"timestamps\[1\]: expected a date and time, got None"):
        predictor.recommend(["Wall", "Door"], timestamps=[start, None])
    with pytest.raises(RequestError, match=r"history\[1\]: expected a command name"):
        predictor.recommend(["Wall", ["Door"]])


def test_a_history_is_cleaned_as_the_training_log_was(tiny_data, tmp_path):
    predictor = Predictor(trained(tiny_data, tmp_path, "run"))
    plain = predictor.recommend(["Wall", "Door"])
    noisy = predictor.recommend(["Wall", "Window.Focus", "Door", "Window.Focus"])  # the sample's noise preset
    assert noisy.commands == plain.commands and noisy.removed == {"noise": 2}
    with pytest.raises(RequestError, match="nothing is left after cleaning"):
        predictor.recommend(["Window.Focus"])
    assert sum(plain.probabilities) <= 1.0 and plain.probabilities == sorted(plain.probabilities, reverse=True)
