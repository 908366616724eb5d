"""What each model component can do, recorded in one place: the builder, the trainer, the exporter
and the reports ask a component's capabilities here instead of comparing its name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cmdrec.errors import InputError
from cmdrec.models.backbones.bert import BertBackbone
from cmdrec.models.backbones.gpt2 import GPT2Backbone
from cmdrec.models.backbones.gru import GRUBackbone
from cmdrec.models.backbones.llama import LlamaBackbone
from cmdrec.models.backbones.mixtral import MixtralBackbone
from cmdrec.models.backbones.pretrained import PretrainedDecoderBackbone
from cmdrec.models.backbones.sasrec import SASRecBackbone
from cmdrec.models.backbones.xlnet import XLNetBackbone
from cmdrec.models.baselines import Markov, MostPopular, RepeatLast


@dataclass(frozen=True)
class Component:
    name: str
    build: Callable
    neural: bool = True  # False: a fitted count model (no weights, no optimizer)
    # causal: position t sees only positions <= t; None: causal exactly when masking is clm (XLNet)
    causal: bool | None = True
    pretrained_weights: bool = False  # wraps a decoder loaded from files outside the model (model.pretrained.path)
    ema: bool = True  # an EMA copy of the weights is affordable (not for a whole pretrained base)
    feed_forward: bool = True  # has feed-forward layers of its own that model.layers.ffn_dim / ffn_activation set
    experts: bool = False  # a mixture of experts: router logits come back as an auxiliary output
    dense_counterpart: str | None = None  # a mixture of experts' backbone with one dense feed-forward per layer
    # the model config sections it reads (of MODEL_SECTIONS: layers, experts, pretrained); a resolved
    # config holds exactly these
    sections: tuple[str, ...] = ("layers",)
    # batch columns its forward receives as keyword arguments beside the fused embeddings, as they are
    # in the data (a time bias reads `log_time_delta`, say); they are loaded and served with the inputs
    extra_inputs: tuple[str, ...] = ()

    def is_causal(self, masking: str) -> bool:
        return masking == "clm" if self.causal is None else self.causal


COMPONENTS = {
    c.name: c
    for c in (
        Component("gpt2", GPT2Backbone),
        Component("sasrec", SASRecBackbone),
        Component("llama", LlamaBackbone),
        Component("bert", BertBackbone, causal=False),
        Component("xlnet", XLNetBackbone, causal=None),
        Component("gru", GRUBackbone, feed_forward=False),
        Component(
            "mixtral",
            MixtralBackbone,
            experts=True,
            dense_counterpart="llama",
            sections=("layers", "experts"),
        ),
        Component(
            "pretrained",
            PretrainedDecoderBackbone,
            pretrained_weights=True,
            ema=False,
            feed_forward=False,
            sections=("pretrained",),
        ),
        Component("repeat_last", RepeatLast, neural=False, causal=None, sections=()),
        Component("popular", MostPopular, neural=False, causal=None, sections=()),
        Component("markov", Markov, neural=False, causal=None, sections=()),
    )
}


def register(spec: Component) -> Component:
    """Make a component of your own (a backbone, a baseline) usable as `model.backbone: NAME`; the
    name must be new. The contract tests hold every registered backbone to the `Backbone` protocol."""
    if spec.name in COMPONENTS:
        raise InputError(f"a model component named {spec.name!r} is registered already")
    COMPONENTS[spec.name] = spec
    return spec


def component(name: str) -> Component:
    if name not in COMPONENTS:
        raise InputError(f"model.backbone: unknown {name!r}; known: {sorted(COMPONENTS)}")
    return COMPONENTS[name]


def backbones() -> list[Component]:
    return [c for c in COMPONENTS.values() if c.neural]
