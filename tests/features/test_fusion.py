import pytest
import torch

from cmdrec.data.sequences import SequenceData, load_schema
from cmdrec.errors import InputError
from cmdrec.features.embeddings import InputBlock
from cmdrec.features.fusion import FUSIONS

COLUMNS = ["command", "category", "log_time_delta", "position"]


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_every_fusion_gives_one_vector_per_event_and_trains(tiny_data, name):
    schema = load_schema(tiny_data)
    block = InputBlock(schema, COLUMNS, d_model=16, fusion=name, n_heads=2)
    batch = SequenceData.load(tiny_data, "train", COLUMNS, 12, "train").batch(torch.arange(4).numpy())
    fused = block(batch.features)
    assert fused.shape == (*batch.items.shape, 16)
    fused.sum().backward()
    assert block.embeddings["category"].weight.grad.abs().sum() > 0  # every feature reaches the output
    assert block.projections["position"].weight.grad.abs().sum() > 0


def test_gated_fusion_weighs_each_feature():
    fusion = FUSIONS["gated"](n_features=2, d_model=4, n_heads=1)
    torch.nn.init.zeros_(fusion.gate.weight)
    torch.nn.init.constant_(fusion.gate.bias, 0.0)  # sigmoid(0) = 0.5 for both features
    features = torch.ones(1, 1, 2, 4)
    assert torch.allclose(fusion(features), torch.ones(1, 1, 4))


def test_attention_pooling_of_identical_features_returns_their_mix():
    fusion = FUSIONS["attention"](n_features=3, d_model=8, n_heads=2)
    features = torch.randn(2, 5, 1, 8).expand(2, 5, 3, 8)
    out = fusion(features)
    assert out.shape == (2, 5, 8) and torch.isfinite(out).all()


def test_unknown_fusion_and_unusable_column_are_refused(tiny_data):
    schema = load_schema(tiny_data)
    with pytest.raises(InputError, match="known: .*attention"):
        InputBlock(schema, ["command"], 16, fusion="magic")
    with pytest.raises(InputError, match="neither categorical nor continuous"):
        InputBlock(schema, ["command", "user_id"], 16)


def test_text_vectors_are_the_same_whether_the_table_or_the_events_are_projected(tiny_data):
    schema = load_schema(tiny_data)
    table = torch.randn(schema["command"].cardinality, 6)
    block = InputBlock(schema, ["command"], d_model=8, text_table=table)
    batch = SequenceData.load(tiny_data, "train", ["command"], 12, "train").batch(torch.arange(8).numpy())
    items = batch.features["command"]
    expected = block.text_projection(table[items])
    block.fusion = TextCapture()
    for events in (items[:1, :2], items):  # fewer events than table rows, then more
        assert (events.numel() < len(table)) == (events is not items)
        block({"command": events})
        assert torch.allclose(block.fusion.text, expected[: events.shape[0], : events.shape[1]], atol=1e-6)


class TextCapture(torch.nn.Module):
    """A sum fusion that keeps the text feature (the last of the stacked features) for inspection."""

    def forward(self, stacked):
        self.text = stacked[:, :, -1]
        return stacked.sum(dim=2)
