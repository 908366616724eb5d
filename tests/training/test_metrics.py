import math

import pytest
import torch

from cmdrec.training.metrics import RankingMetrics, seen_items, target_ranks
from cmdrec.training.schedule import effective_warmup, lr_multiplier


def test_ranks_are_full_ranking_with_ties_counted_against_the_target():
    logits = torch.tensor([[0.0, 0.0, 5.0, 1.0, 2.0], [0.0, 0.0, 1.0, 1.0, 1.0]])
    assert target_ranks(logits, torch.tensor([2, 3])).tolist() == [0, 2]  # 2 others tie with item 3


def test_hand_computed_metrics():
    metrics = RankingMetrics((3, 5, 10))
    metrics.add(torch.tensor([0, 2, 5, 20]))
    result = metrics.result()
    assert result["recall@3"] == pytest.approx(2 / 4)
    assert result["recall@5"] == pytest.approx(2 / 4)  # rank 5 is the 6th item
    assert result["recall@10"] == pytest.approx(3 / 4)
    assert result["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert result["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(7)) / 4)
    assert result["mrr@3"] == pytest.approx((1 + 1 / 3) / 4)
    assert result["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 6) / 4)


def test_excluding_seen_items_but_never_the_target():
    logits = torch.tensor([[0.0, 0.0, 9.0, 8.0, 1.0]])
    inputs = torch.tensor([[2, 3, 0]])
    seen = seen_items(inputs, inputs != 0, 5)
    assert seen.tolist() == [[False, False, True, True, False]]
    assert target_ranks(logits, torch.tensor([4])).item() == 2
    assert target_ranks(logits, torch.tensor([4]), exclude=seen).item() == 0
    assert target_ranks(logits, torch.tensor([3]), exclude=seen).item() == 0  # 2 is removed, 3 is the target


def test_cosine_schedule_with_warmup():
    assert lr_multiplier(0, 100, 10) == pytest.approx(0.1)
    assert lr_multiplier(9, 100, 10) == pytest.approx(1.0)
    assert lr_multiplier(10, 100, 10) == pytest.approx(1.0)
    assert lr_multiplier(55, 100, 10) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
    values = [lr_multiplier(s, 100, 10) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_linear_and_constant_schedules_and_warmup_bounded_by_a_share_of_the_run():
    assert lr_multiplier(55, 100, 10, schedule="linear") == pytest.approx(0.5)
    assert lr_multiplier(100, 100, 10, min_ratio=0.2, schedule="linear") == pytest.approx(0.2)
    assert lr_multiplier(80, 100, 10, schedule="constant") == 1.0
    assert effective_warmup(100, 0.1, 40) == 4  # a short run is not spent warming up
    assert effective_warmup(100, 0.1, 5000) == 100  # a long one keeps its configured warm-up


def test_frequency_buckets_split_training_events_by_share():
    from cmdrec.training.metrics import frequency_buckets

    counts = torch.tensor([0, 0, 50, 10, 30, 5, 5, 0])  # 100 events; reserved ids 0, 1 and item 7 unseen
    buckets = frequency_buckets(counts)
    # item 2 alone is the first 50%; items 4 (30%) make the torso up to 80%; the rest is tail
    assert buckets[2] == 0 and buckets[4] == 1
    assert buckets[3] == 2 and buckets[5] == 2
    assert buckets[7] == 3  # never seen in training


def test_evaluate_reports_each_bucket(tiny_data):
    import polars as pl

    from cmdrec.config import EvalConfig, LayersConfig, ModelConfig
    from cmdrec.data.sequences import SequenceData, load_schema
    from cmdrec.models.build import build_model
    from cmdrec.training.evaluate import evaluate
    from cmdrec.training.metrics import frequency_buckets

    config = ModelConfig(d_model=16, layers=LayersConfig(1, 2), max_length=12)
    model = build_model(config, load_schema(tiny_data))
    counts = torch.tensor(pl.read_parquet(tiny_data / "items.parquet")["train_count"].to_list())
    result = evaluate(
        model,
        SequenceData.load(tiny_data, "test", [], 12, "eval"),
        config,
        EvalConfig(),
        {},
        buckets=frequency_buckets(counts),
    )
    present = [b for b in ("head", "torso", "tail", "unseen") if f"{b}/positions" in result]
    assert sum(result[f"{b}/positions"] for b in present) == result["positions_evaluated"]
    weighted = sum(result[f"{b}/ndcg@10"] * result[f"{b}/positions"] for b in present)
    assert weighted / result["positions_evaluated"] == pytest.approx(result["ndcg@10"])
