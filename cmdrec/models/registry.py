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
    pretrained_weights: bool = False  # wraps a decoder loaded from files outside the model (model.pretrained)
    ema: bool = True  # an EMA copy of the weights is affordable (not for a whole pretrained base)
    feed_forward: bool = True  # has feed-forward layers of its own that model.ffn_dim / ffn_activation set
    experts: bool = False  # a mixture of experts: router logits come back as an auxiliary output
    dense_counterpart: str | None = None  # a mixture of experts' backbone with one dense feed-forward per layer
    config_keys: tuple[str, ...] = ()  # the model.* keys that only this component reads

    def is_causal(self, masking: str) -> bool:
        return masking == "clm" if self.causal is None else self.causal


_SASREC_KEYS = ("ffn_dim", "ffn_activation")
COMPONENTS = {
    c.name: c
    for c in (
        Component("gpt2", GPT2Backbone, config_keys=_SASREC_KEYS),
        Component("sasrec", SASRecBackbone, config_keys=_SASREC_KEYS),
        Component("llama", LlamaBackbone, config_keys=_SASREC_KEYS),
        Component("bert", BertBackbone, causal=False, config_keys=_SASREC_KEYS),
        Component("xlnet", XLNetBackbone, causal=None, config_keys=_SASREC_KEYS),
        Component("gru", GRUBackbone, feed_forward=False),
        Component(
            "mixtral",
            MixtralBackbone,
            experts=True,
            dense_counterpart="llama",
            config_keys=(*_SASREC_KEYS, "n_experts", "experts_per_token"),
        ),
        Component(
            "pretrained",
            PretrainedDecoderBackbone,
            pretrained_weights=True,
            ema=False,
            feed_forward=False,
            config_keys=("pretrained", "bit", "attn_implementation", "gradient_checkpointing", "adapter"),
        ),
        Component("repeat_last", RepeatLast, neural=False, causal=None),
        Component("popular", MostPopular, neural=False, causal=None),
        Component("markov", Markov, neural=False, causal=None),
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
