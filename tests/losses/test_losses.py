import pytest
import torch
import torch.nn.functional as F

from cmdrec.losses import cross_entropy, focal, load_balancing


def test_focal_with_gamma_zero_equals_cross_entropy():
    logits, targets = torch.randn(32, 10), torch.randint(0, 10, (32,))
    assert focal(logits, targets, gamma=0.0).item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)
    assert cross_entropy(logits, targets).item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)


def test_focal_down_weights_confident_correct_predictions():
    easy = torch.tensor([[8.0, 0.0, 0.0]])
    hard = torch.tensor([[0.0, 0.5, 0.0]])
    target = torch.tensor([0])
    ratio_easy = focal(easy, target, 2.0) / cross_entropy(easy, target)
    ratio_hard = focal(hard, target, 2.0) / cross_entropy(hard, target)
    assert ratio_easy < 0.01 < ratio_hard
    p = torch.softmax(hard, -1)[0, 0]
    assert focal(hard, target, 2.0).item() == pytest.approx(((1 - p) ** 2 * -torch.log(p)).item(), rel=1e-6)


def test_load_balancing_is_one_when_balanced_and_larger_when_not():
    balanced = [torch.zeros(8, 4)]  # equal router probabilities; top-2 ties pick experts 0 and 1
    assert load_balancing(balanced, top_k=1).item() == pytest.approx(1.0)
    collapsed = torch.full((8, 4), -10.0)
    collapsed[:, 0] = 10.0
    assert load_balancing([collapsed], top_k=1).item() == pytest.approx(4.0, rel=1e-3)


def test_load_balancing_ignores_padding_tokens():
    logits = torch.full((2, 4), -10.0)
    logits[0, 0] = 10.0
    logits[1, 1] = 10.0  # a padding token routed elsewhere
    mask = torch.tensor([[True, False]])
    assert load_balancing([logits], top_k=1, token_mask=mask).item() == pytest.approx(4.0, rel=1e-3)
    assert load_balancing([logits], top_k=1).item() == pytest.approx(2.0, rel=1e-3)
