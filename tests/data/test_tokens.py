"""Workflow tokens (features.workflows): merges learned on the training split, every split tokenized,
evaluation on the next command, and serving that reads a history exactly as evaluation does."""

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
import torch

from cmdrec.batch import Batch
from cmdrec.config import WorkflowsConfig
from cmdrec.data.dataset import PreparedDataset
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.synthetic import sample_config, write_sample
from cmdrec.data.tokens import WorkflowTokens, token_extensions
from cmdrec.errors import InputError, RequestError
from cmdrec.models.recommender import ModelOutput
from cmdrec.models.tokens import command_logits, score_next_commands
from cmdrec.serving import Predictor
from cmdrec.training.evaluate import evaluate_run
from cmdrec.training.loop import train
from tests.conftest import tiny_run
from tests.serving.test_predict import assert_suggestions_equal_evaluation, command_names


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    write_sample(root / "raw", users=16, sessions_per_user=6, seed=3)
    config = sample_config(str(root / "raw"), str(root / "out"))
    features = dataclasses.replace(config.features, workflows=WorkflowsConfig(merges=15, min_count=5))
    config = dataclasses.replace(config, features=features)
    process_logs(config)
    return root / "out/preprocessed", preprocess(config), root


def test_merges_are_learned_on_train_and_every_split_is_tokenized(tokenized):
    data, report, root = tokenized
    train_report = report["transform"]["train"]["workflows"]
    assert train_report["learned"] == 15 and train_report["tokens"] < train_report["events"]
    assert " > " in train_report["first_learned"][0]["name"]
    schema = PreparedDataset(data).schema()
    commands = schema.item_id.properties["commands"]
    assert schema.item_id.cardinality == commands + 15 and len(schema.item_id.properties["workflow_tokens"]) == 15
    # a test row is the tokens of every event before the last, then the last event: a command
    events = pl.read_parquet(root / "out/processed/events.parquet")
    test = pl.read_parquet(data / "test.parquet")
    names = command_names(data)
    tokens = PreparedDataset(data).workflow().tokens
    for row in test.head(10).iter_rows(named=True):
        session = events.filter(pl.col("session_id") == row["session_id"])["command"].to_list()
        ids = [names.index(c) for c in session]
        assert row["command"][-1] == ids[-1] < commands
        assert row["command"][:-1] == tokens.spans([ids[:-1]])[0][0]
        assert row["length"] == len(row["command"]) == len(row["category"])


def test_token_scores_combine_into_the_probability_of_each_first_command():
    first = torch.tensor([0, 1, 2, 3, 2, 2])  # tokens 4 and 5 start with command 2
    logits = torch.randn(3, 6)
    combined = command_logits(logits, first)
    probabilities = torch.softmax(logits, 1)
    expected = torch.stack([probabilities[:, 0], probabilities[:, 1], probabilities[:, [2, 4, 5]].sum(1),
                            probabilities[:, 3]], 1)  # fmt: skip
    assert torch.allclose(torch.softmax(combined[:, 2:], 1), expected[:, 2:] / expected[:, 2:].sum(1, keepdim=True))
    assert (combined[:, :2] == float("-inf")).all()  # padding and OOV are never suggested, merged or not


def test_every_extension_of_a_learned_token_is_found(tokenized):
    data, _, _ = tokenized
    schema = PreparedDataset(data).schema()
    commands, parts = schema.item_id.properties["commands"], schema.item_id.properties["workflow_tokens"]
    runs = {i: [i] for i in range(commands)} | {commands + j: list(p) for j, p in enumerate(parts)}
    found = set(zip(*token_extensions(schema), strict=True))
    expected = {
        (shorter, longer, runs[longer][len(runs[shorter])])
        for longer in runs
        for shorter in runs
        if len(runs[shorter]) < len(runs[longer]) and runs[longer][: len(runs[shorter])] == runs[shorter]
    }
    assert found == expected and any(len(runs[shorter]) > 1 for shorter, _, _ in found)  # composite prefixes too


def test_a_history_that_ends_inside_a_workflow_is_also_read_before_its_last_token():
    # commands B=2, C=3, D=4; token 5 is "B > C". The history [D, B] ends where training saw "B > C"
    first = torch.tensor([0, 1, 2, 3, 4, 2])
    extensions = (np.array([2]), np.array([5]), np.array([3]))  # "B > C" extends B with C
    before, after = torch.randn(6), torch.randn(6)  # the model's token logits at the two positions

    def model(batch):
        assert batch.loss_mask.tolist() == [[True, True], [True, False]]  # the earlier position is read too
        return ModelOutput({"command": torch.stack([before, after, torch.zeros(6)])})

    batch = Batch({"command": torch.tensor([[4, 2], [4, 0]])}, torch.tensor([[True, True], [True, False]]),
                  loss_mask=torch.tensor([[False, True], [True, False]]))  # fmt: skip
    scores, _, scored = score_next_commands(model, batch, first, extensions)
    assert scored.tolist() == [False, True, True]
    p, q = torch.softmax(before, 0), torch.softmax(command_logits(after[None], first)[0], 0)
    expected = p[2] * q
    expected[3] += p[5]  # P(C): "B > C" in B's place, or B and then C
    expected[:2] = 0
    assert torch.allclose(scores[0].exp(), expected, atol=1e-6)
    assert torch.equal(scores[1], command_logits(torch.zeros(1, 6), first)[0])  # one event: nothing before it


def test_a_model_on_tokens_is_evaluated_and_served_on_the_next_command(tokenized, tmp_path):
    data, _, _ = tokenized
    train(tiny_run(data, tmp_path, "run", training={"epochs": 2}), show_progress=False)
    metrics = evaluate_run(tmp_path / "run")
    assert 0 < metrics["ndcg@10"] <= 1 and metrics["positions_evaluated"] > 0
    predictor = Predictor(tmp_path / "run")
    assert_suggestions_equal_evaluation(predictor, data)  # the served history is tokenized as evaluated
    # and served suggestions score as evaluation does: the same Recall@10 over the test sessions
    names, item = command_names(data), PreparedDataset(data).schema().item_id.properties
    parts = {item["commands"] + j: p for j, p in enumerate(item["workflow_tokens"])}
    sessions = pl.read_parquet(data / "test.parquet")["command"].to_list()
    histories = [[names[c] for i in s[:-1] for c in parts.get(i, [i])] for s in sessions]
    answers = predictor.recommend_many(histories, k=10)
    served = sum(names[s[-1]] in a.commands for s, a in zip(sessions, answers, strict=True)) / len(sessions)
    assert served == pytest.approx(metrics["recall@10"])
    answer = predictor.recommend(["Open", "Wall", "Wall", "Door"], k=5)
    assert len(answer.commands) == 5 and all(" > " not in c for c in answer.commands)
    workflows = predictor.recommend_workflows(["Open", "Wall", "Wall", "Door"], k=20)
    assert len(workflows) == 20 and any(len(run) > 1 for run, _ in workflows)
    assert sum(p for _, p in workflows) <= 1 + 1e-6
    with pytest.raises(RequestError, match="workflow tokens"):
        predictor.recommend(["Open", "Wall"], exclude_seen=True)


def test_evaluation_modes_and_maskings_that_tokens_cannot_serve_are_refused(tokenized, tmp_path):
    data, _, _ = tokenized
    with pytest.raises(InputError, match="counts single commands"):
        train(tiny_run(data, tmp_path, "markov", model={"backbone": "markov"}), show_progress=False)
    with pytest.raises(InputError, match="masking clm only"):
        train(tiny_run(data, tmp_path, "bert", model={"backbone": "bert", "masking": "mlm"}), show_progress=False)
    train(tiny_run(data, tmp_path, "run", training={"epochs": 1}), show_progress=False)
    from cmdrec.config import EvalConfig

    with pytest.raises(InputError, match="positions=last"):
        evaluate_run(tmp_path / "run", EvalConfig(positions="all"))


def test_the_tokenizer_round_trips_and_a_partitioned_log_is_refused(tokenized, tmp_path):
    data, _, root = tokenized
    tokens = PreparedDataset(data).workflow().tokens
    again = WorkflowTokens.load(data / "workflow", tokens.n_commands)
    history = list(np.random.default_rng(0).integers(2, tokens.n_commands, 50))
    assert again.spans([history]) == tokens.spans([history])
    assert json.loads((data / "workflow" / "workflow_tokens.json").read_text())["model"]["type"] == "BPE"
    config = sample_config(str(root / "raw"), str(tmp_path / "parts"))
    config = dataclasses.replace(
        config,
        processing=dataclasses.replace(config.processing, partitions=2),
        features=dataclasses.replace(config.features, workflows=WorkflowsConfig(merges=5, min_count=5)),
    )
    process_logs(config)
    with pytest.raises(InputError, match="processing.partitions=1"):
        preprocess(config)


def test_the_service_returns_workflows(tokenized, tmp_path):
    from fastapi.testclient import TestClient

    from cmdrec.serving.service import create_app

    data, _, _ = tokenized
    train(tiny_run(data, tmp_path, "run", training={"epochs": 1}), show_progress=False)
    with TestClient(create_app(tmp_path / "run")) as client:
        answer = client.post("/v1/workflows", json={"history": ["Open", "Wall", "Door"], "k": 10}).json()
        runs = answer["workflows"]
        assert len(runs) == 10 and any(len(r["commands"]) > 1 for r in runs)
        assert all(r["name"] == " > ".join(r["commands"]) for r in runs)
        assert client.post("/v1/workflows", json={"history": ["Open"], "k": 0}).status_code == 422
