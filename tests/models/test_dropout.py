import pytest
import torch
from torch import nn

from cmdrec.data.sequences import load_schema
from cmdrec.models.build import build_model, resolve_sections
from cmdrec.models.dropout import ByteMaskDropout, use_byte_mask_dropout
from cmdrec.training.loop import train
from tests.conftest import tiny_run
from tests.training.test_loop import Kill, KillAt, final_weights


def test_the_rate_is_rounded_to_a_byte_and_the_expectation_kept():
    torch.manual_seed(0)
    dropout = ByteMaskDropout(0.3).train()
    inputs = torch.ones(1_000_000, requires_grad=True)
    outputs = dropout(inputs)
    dropped = (outputs == 0).float().mean().item()
    assert dropout.drop_below == 77 and abs(dropped - 77 / 256) < 0.002
    assert outputs.unique().tolist() == pytest.approx([0.0, 256 / 179])
    assert abs(outputs.mean().item() - 1) < 0.005
    outputs.backward(torch.full_like(outputs, 2.0))
    assert torch.equal(inputs.grad, 2 * outputs.detach())  # the same mask and scale flow back


def test_evaluation_and_the_edge_rates():
    inputs = torch.randn(64, 8)
    assert torch.equal(ByteMaskDropout(0.5).eval()(inputs), inputs)
    assert torch.equal(ByteMaskDropout(0.0).train()(inputs), inputs)
    assert torch.equal(ByteMaskDropout(1.0).train()(inputs), torch.zeros_like(inputs))


@pytest.mark.parametrize("backbone", ["gpt2", "sasrec", "gru"])
def test_every_dropout_of_a_model_is_replaced(tiny_data, tmp_path, backbone):
    config = resolve_sections(tiny_run(tiny_data, tmp_path, model={"backbone": backbone}).model)
    model = build_model(config, load_schema(tiny_data))
    before = sum(type(m) is nn.Dropout for m in model.modules())
    assert before and use_byte_mask_dropout(model) == before
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert sum(isinstance(m, ByteMaskDropout) for m in model.modules()) == before


def figures_of(result: dict) -> dict:
    return {name: value for name, value in result["test"].items() if name != "eval_seconds"}


def test_training_with_it_is_seeded_and_resumes_exactly(tiny_data, tmp_path):
    fast = {"model": {"dropout": 0.3}, "training": {"fast_dropout": True, "checkpoint_every_steps": 3}}
    straight = train(tiny_run(tiny_data, tmp_path, "straight", **fast), show_progress=False)
    with pytest.raises(Kill):
        train(tiny_run(tiny_data, tmp_path, "killed", **fast), callbacks=[KillAt(5)], show_progress=False)
    resumed = train(tiny_run(tiny_data, tmp_path, "killed", **fast), show_progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a) and figures_of(resumed) == figures_of(straight)
    plain = {"model": {"dropout": 0.3}, "training": {"checkpoint_every_steps": 3}}
    train(tiny_run(tiny_data, tmp_path, "plain", **plain), show_progress=False)
    c = final_weights(tmp_path / "plain")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the setting changed the masks drawn
