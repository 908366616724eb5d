"""Masking, including the evaluation leak of Transformers4Rec issue #765."""

import dataclasses

import pytest
import torch
from torch import nn

from cmdrec.batch import Batch
from cmdrec.config import EvalConfig, LayersConfig, ModelConfig
from cmdrec.data.masking import clm, mask_batch, mlm
from cmdrec.data.sequences import SequenceData, load_schema
from cmdrec.errors import InputError
from cmdrec.features.embeddings import InputBlock
from cmdrec.models.backbones.bert import BertBackbone
from cmdrec.models.build import build_model
from cmdrec.models.heads import ClassificationHead
from cmdrec.models.recommender import SequenceRecommender
from cmdrec.training.evaluate import evaluate
from cmdrec.training.metrics import RankingMetrics, target_ranks


def toy_batch():
    items = torch.tensor([[5, 6, 7, 8], [9, 3, 0, 0]])
    return Batch(features={"command": items, "hour": torch.rand(2, 4)}, padding_mask=items != 0)


def test_clm_shifts_targets_and_drops_the_last_event_from_inputs():
    masked = clm(toy_batch(), ["command"], positions="all")
    assert masked.items.tolist() == [[5, 6, 7], [9, 0, 0]]
    assert masked.targets["command"].tolist() == [[6, 7, 8], [3, 0, 0]]
    assert masked.loss_mask.tolist() == [[True, True, True], [True, False, False]]
    assert masked.features["hour"][1, 1:].eq(0).all()


def test_last_item_and_all_items_modes_build_the_same_input():
    batch = toy_batch()
    last, every = clm(batch, ["command"], positions="last"), clm(batch, ["command"], positions="all")
    assert torch.equal(last.padding_mask, every.padding_mask)
    assert all(torch.equal(last.features[k], every.features[k]) for k in last.features)
    assert last.loss_mask.tolist() == [[False, False, True], [True, False, False]]


def test_oov_targets_are_not_predicted():
    masked = clm(
        Batch(features={"command": torch.tensor([[5, 1, 7]])}, padding_mask=torch.ones(1, 3, dtype=torch.bool)),
        ["command"],
    )
    assert masked.loss_mask.tolist() == [[False, True]]


def bidirectional_model(schema, config):
    """A BERT backbone under clm evaluation: the builder refuses it for training; here it shows
    that the evaluation input cannot leak the target whatever the backbone."""
    inputs = InputBlock(schema, ["command"], config.d_model)
    head = ClassificationHead(config.d_model, schema.item_id.cardinality, inputs.item_embedding)
    return SequenceRecommender(inputs, BertBackbone(config), nn.ModuleDict({"command": head})).eval()


@pytest.mark.parametrize("backbone", ["gpt2", "gpt2 with history copy", "bidirectional"])
def test_changing_the_target_leaves_evaluation_logits_unchanged(tiny_data, backbone):
    schema = load_schema(tiny_data)
    config = ModelConfig(
        backbone="gpt2", d_model=16, layers=LayersConfig(1, 2), max_length=12, history_copy="copy" in backbone
    )
    model = bidirectional_model(schema, config) if backbone == "bidirectional" else build_model(config, schema).eval()
    batch = SequenceData.load(tiny_data, "test", [], 12, "eval").batch(torch.arange(8).numpy())
    changed = dataclasses.replace(batch, features={"command": batch.items.clone()})
    last = batch.padding_mask.sum(1) - 1
    changed.items[torch.arange(8), last] = (changed.items[torch.arange(8), last] + 1) % schema.item_id.cardinality + 2
    with torch.no_grad():
        before = model(clm(batch, ["command"], positions="last")).logits["command"]
        after = model(clm(changed, ["command"], positions="last")).logits["command"]
    assert torch.equal(before, after)


def test_evaluate_equals_manual_inference_on_sequences_truncated_by_one(tiny_data):
    schema = load_schema(tiny_data)
    config = ModelConfig(backbone="gpt2", d_model=16, layers=LayersConfig(1, 2), max_length=12)
    torch.manual_seed(0)
    model = build_model(config, schema).eval()
    data = SequenceData.load(tiny_data, "test", [], 12, "eval")
    reported = evaluate(model, data, config, EvalConfig(batch_size=7), {})
    manual = RankingMetrics()
    with torch.no_grad():
        for index in range(len(data)):
            items = torch.from_numpy(data.arrays["command"][index, : data.lengths[index]]).long()
            history, target = items[:-1][None, :], items[-1:]
            if target.item() == 1:  # OOV targets are skipped (and counted) by evaluate
                continue
            loss_mask = torch.zeros_like(history, dtype=torch.bool)
            loss_mask[0, -1] = True
            logits = model(
                Batch(features={"command": history}, padding_mask=torch.ones_like(loss_mask), loss_mask=loss_mask)
            ).logits["command"]
            manual.add(target_ranks(logits, target))
    for name, value in manual.result().items():
        assert reported[name] == pytest.approx(value, abs=1e-6), name
    assert reported["positions_evaluated"] == manual.count


def test_clm_with_a_bidirectional_backbone_is_refused(tiny_data):
    with pytest.raises(InputError, match="bidirectional"):
        build_model(ModelConfig(backbone="bert", masking="clm", d_model=16), load_schema(tiny_data))


def test_mlm_training_masks_every_feature_of_chosen_events():
    batch = toy_batch()
    masked = mlm(batch, ["command"], {"command": 99}, probability=0.5, generator=torch.Generator().manual_seed(0))
    chosen = masked.loss_mask
    assert chosen.any(1).all()  # at least one prediction per sequence
    assert (masked.items[chosen] == 99).all()
    assert (masked.features["hour"][chosen] == 0).all()
    assert torch.equal(masked.targets["command"][chosen], batch.items[chosen])
    assert torch.equal(masked.items[~chosen], batch.items[~chosen])


def test_mlm_evaluation_masks_the_last_event_only():
    masked = mask_batch(toy_batch(), "mlm", ["command"], training=False, mask_ids={"command": 99})
    assert masked.loss_mask.tolist() == [[False, False, False, True], [False, True, False, False]]
    assert masked.items.tolist() == [[5, 6, 7, 99], [9, 99, 0, 0]]
    assert masked.targets["command"][masked.loss_mask].tolist() == [8, 3]
