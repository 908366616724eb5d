"""A backbone that reads a batch column beside the fused embeddings (as HSTU reads time gaps) gets it
in training, evaluation and serving alike, through the registry's `extra_inputs`."""

import pytest
import torch
from torch import nn

from cmdrec.data.sequences import load_schema
from cmdrec.errors import InputError
from cmdrec.models.build import build_model, model_columns, resolve_sections
from cmdrec.models.contract import check_backbone
from cmdrec.models.registry import COMPONENTS, Component
from cmdrec.serving import Predictor
from cmdrec.training.loop import train
from tests.conftest import tiny_run
from tests.serving.test_predict import assert_suggestions_equal_evaluation


class PositionWeighted(nn.Module):
    """A causal running mean of the embeddings, each event weighted by a learned function of its
    position in the session (the data's `position` column)."""

    causal = True

    def __init__(self, config):
        super().__init__()
        self.slope = nn.Parameter(torch.zeros(1))
        self.out = nn.Linear(config.d_model, config.d_model)

    def forward(self, embeddings, padding_mask, position):
        weights = torch.exp(self.slope * position) * padding_mask
        mean = torch.cumsum(embeddings * weights[..., None], 1) / (torch.cumsum(weights, 1)[..., None] + 1e-6)
        return self.out(mean), {}


@pytest.fixture
def registered(monkeypatch):
    spec = Component("position_weighted", PositionWeighted, sections=(), extra_inputs=("position",))
    monkeypatch.setitem(COMPONENTS, spec.name, spec)
    return spec


def test_an_extra_input_keeps_the_contract_and_is_served_as_it_is_evaluated(registered, tiny_data, tmp_path):
    check_backbone("position_weighted")
    config = tiny_run(tiny_data, tmp_path, "weighted", model={"backbone": "position_weighted"}, training={"epochs": 1})
    assert model_columns(resolve_sections(config.model), load_schema(tiny_data)) == ["command", "position"]
    train(config, show_progress=False)
    predictor = Predictor(tmp_path / "weighted")
    assert predictor.columns == ["command", "position"]
    assert predictor.model.backbone.slope.item() != 0  # it trained on the column
    assert_suggestions_equal_evaluation(predictor, tiny_data)


def test_an_extra_input_the_data_lacks_is_refused(registered, tiny_data, monkeypatch):
    spec = Component("gap_biased", PositionWeighted, sections=(), extra_inputs=("seconds_to_deadline",))
    monkeypatch.setitem(COMPONENTS, spec.name, spec)
    config = tiny_run(tiny_data, "runs", "x", model={"backbone": "gap_biased"}).model
    with pytest.raises(InputError, match=r"reads \['seconds_to_deadline'\], which this data does not have"):
        build_model(config, load_schema(tiny_data))
