import torch
from torch import nn

from cmdrec.models.heads import ClassificationHead
from cmdrec.schema import FIRST_VALUE_ID


def test_a_head_without_learned_bias_scores_by_dot_product_and_never_predicts_reserved_ids():
    embedding = nn.Embedding(7, 4)
    head = ClassificationHead(4, 7, tied_embedding=embedding, learned_bias=False)
    assert [name for name, _ in head.named_parameters()] == ["tied_embedding.weight"] and "zero_bias" not in head.state_dict()
    hidden = torch.randn(3, 4)
    logits = head(hidden)
    assert torch.allclose(logits[:, FIRST_VALUE_ID:], hidden @ embedding.weight[FIRST_VALUE_ID:].t())
    assert (logits[:, :FIRST_VALUE_ID] == torch.finfo(logits.dtype).min).all()
    assert ClassificationHead(4, 7, tied_embedding=embedding).bias.shape == (7,)
