import pytest
import torch
from torch import nn

from cmdrec.models.heads import ClassificationHead
from cmdrec.schema import FIRST_VALUE_ID


def test_a_head_without_learned_bias_scores_by_dot_product_and_never_predicts_reserved_ids():
    embedding = nn.Embedding(7, 4)
    head = ClassificationHead(4, 7, tied_embedding=embedding, learned_bias=False)
    assert [name for name, _ in head.named_parameters()] == [
        "tied_embedding.weight"
    ] and "zero_bias" not in head.state_dict()
    hidden = torch.randn(3, 4)
    logits = head(hidden)
    assert torch.allclose(logits[:, FIRST_VALUE_ID:], hidden @ embedding.weight[FIRST_VALUE_ID:].t())
    assert (logits[:, :FIRST_VALUE_ID] == torch.finfo(logits.dtype).min).all()
    assert ClassificationHead(4, 7, tied_embedding=embedding).bias.shape == (7,)


def copy_model(tiny_data, **fields):
    from cmdrec.config import LayersConfig, ModelConfig
    from cmdrec.data.sequences import load_schema
    from cmdrec.models.build import build_model

    config = ModelConfig(
        backbone="gpt2", d_model=16, layers=LayersConfig(1, 2), max_length=12, history_copy=True, **fields
    )
    torch.manual_seed(0)
    return build_model(config, load_schema(tiny_data)).eval()


def history_batch():
    from cmdrec.batch import Batch

    items = torch.tensor([[5, 6, 5, 7, 8], [9, 1, 4, 0, 0]])  # 1 is the out-of-vocabulary id
    loss_mask = torch.tensor([[False, True, False, True, False], [False, False, True, False, False]])
    return Batch(features={"command": items}, padding_mask=items != 0, loss_mask=loss_mask)


def test_history_copy_returns_a_distribution_that_never_predicts_reserved_ids(tiny_data):
    with torch.no_grad():
        log_probabilities = copy_model(tiny_data)(history_batch()).logits["command"]
    assert log_probabilities.shape[0] == 3
    assert (log_probabilities[:, :FIRST_VALUE_ID] == torch.finfo(torch.float32).min).all()
    assert torch.allclose(log_probabilities[:, FIRST_VALUE_ID:].exp().sum(1), torch.ones(3), atol=1e-5)


def test_history_copy_points_only_at_commands_up_to_the_predicted_position(tiny_data):
    model = copy_model(tiny_data)
    with torch.no_grad():
        model.history_copy.gate.bias.fill_(50.0)  # all mass on the pointer
        probabilities = model(history_batch()).logits["command"].exp()
    reachable = [{5, 6}, {5, 6, 7}, {9, 4}]  # position 1, position 3 of row 0; position 2 of row 1 (never the OOV id)
    for row, commands in zip(probabilities, reachable, strict=False):
        assert set((row > 1e-9).nonzero().squeeze(1).tolist()) == commands  # the vocabulary keeps ~1e-22 of the mass
        assert row.sum() == pytest.approx(1.0, abs=1e-5)


def test_history_copy_gets_gradients_and_is_refused_with_mlm(tiny_data):
    from cmdrec.errors import InputError

    model = copy_model(tiny_data).train()
    log_probabilities = model(history_batch()).logits["command"]
    torch.nn.functional.cross_entropy(log_probabilities, torch.tensor([5, 8, 4])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.history_copy.parameters())
    with pytest.raises(InputError, match="history_copy.*clm"):
        copy_model(tiny_data, masking="mlm")
