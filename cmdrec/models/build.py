"""Registries of backbones and baselines, read in one place, and the model builder."""

from __future__ import annotations

import torch
from torch import nn

from cmdrec.config import ModelConfig
from cmdrec.errors import InputError
from cmdrec.features.embeddings import InputBlock
from cmdrec.models.backbones.bert import BertBackbone
from cmdrec.models.backbones.gpt2 import GPT2Backbone
from cmdrec.models.backbones.gru import GRUBackbone
from cmdrec.models.backbones.llama import LlamaBackbone
from cmdrec.models.backbones.mixtral import MixtralBackbone
from cmdrec.models.backbones.pretrained import PretrainedDecoderBackbone
from cmdrec.models.backbones.sasrec import SASRecBackbone
from cmdrec.models.backbones.xlnet import XLNetBackbone
from cmdrec.models.baselines import Markov, MostPopular, RepeatLast
from cmdrec.models.heads import ClassificationHead, HistoryCopy, TextScoringHead
from cmdrec.models.recommender import SequenceRecommender
from cmdrec.schema import Schema, Tag

BACKBONES = {
    "gpt2": GPT2Backbone,
    "sasrec": SASRecBackbone,
    "llama": LlamaBackbone,
    "bert": BertBackbone,
    "xlnet": XLNetBackbone,
    "gru": GRUBackbone,
    "mixtral": MixtralBackbone,
    "pretrained": PretrainedDecoderBackbone,
}
BASELINES = {"repeat_last": RepeatLast, "popular": MostPopular, "markov": Markov}


def is_neural(config: ModelConfig) -> bool:
    if config.backbone in BACKBONES:
        return True
    if config.backbone in BASELINES:
        return False
    raise InputError(f"model.backbone: unknown {config.backbone!r}; known: {sorted(BACKBONES) + sorted(BASELINES)}")


def input_columns(config: ModelConfig, schema: Schema) -> list[str]:
    return [schema.item_id.name, *config.input_features]


def data_columns(config: ModelConfig, schema: Schema) -> list[str]:
    """Columns to load: the inputs plus the labels of auxiliary tasks (targets come from them)."""
    return list(dict.fromkeys([*input_columns(config, schema), *config.aux_tasks]))


def build_model(
    config: ModelConfig, schema: Schema, text_table: torch.Tensor | None = None, decoder: nn.Module | None = None
) -> SequenceRecommender:
    """`text_table` (n_items, dim) is required when `config.text_embeddings` is set; `decoder`, the
    loaded pretrained decoder (see cmdrec.training.adapters), when the backbone is "pretrained"."""
    if not is_neural(config):
        raise InputError(f"{config.backbone!r} is a non-neural baseline; use build_baseline")
    if config.backbone in ("gru", "pretrained") and (config.ffn_dim or config.ffn_activation):
        raise InputError(
            f"model.ffn_dim / ffn_activation: backbone {config.backbone!r} has no feed-forward layer of its own to set"
        )
    if config.backbone == "pretrained":  # the one backbone that wraps weights loaded outside the model
        if decoder is None:
            raise InputError("backbone 'pretrained' needs its decoder loaded by cmdrec.training.adapters.load_decoder")
        backbone = PretrainedDecoderBackbone(config, decoder)
    else:
        backbone = BACKBONES[config.backbone](config)
    if config.masking == "clm" and not backbone.causal:
        raise InputError(
            f"model.backbone {config.backbone!r} is bidirectional: with clm masking position t would see its own "
            "target t+1 during training; use masking: mlm"
        )
    if config.history_copy and config.masking != "clm":
        raise InputError(
            "model.history_copy points at the events before each predicted one, which only clm masking keeps; "
            f"masking is {config.masking!r}"
        )
    item = schema.item_id
    if (config.text_embeddings or config.text_output) and (
        text_table is None or len(text_table) != schema.item_id.cardinality
    ):
        raise InputError(
            "model.text_embeddings / text_output need a text table with one row per command id; run `cmdrec "
            "embed` on this dataset"
        )
    inputs = InputBlock(
        schema,
        input_columns(config, schema),
        config.d_model,
        config.fusion,
        config.n_heads,
        text_table if config.text_embeddings else None,
        config.input_scaling,
    )
    if config.text_output:
        heads = {item.name: TextScoringHead(config.d_model, text_table)}
    else:
        heads = {
            item.name: ClassificationHead(
                config.d_model,
                item.cardinality,
                inputs.item_embedding if config.tie_weights else None,
                learned_bias=config.output_bias,
            )
        }
    for task in config.aux_tasks:
        if not schema[task].has(Tag.LABEL):
            raise InputError(f"model.aux_tasks: column {task!r} is not tagged as a label in the schema")
        heads[task] = ClassificationHead(config.d_model, schema[task].cardinality)
    return SequenceRecommender(
        inputs, backbone, nn.ModuleDict(heads), HistoryCopy(config.d_model) if config.history_copy else None
    )


def build_baseline(config: ModelConfig, schema: Schema):
    is_neural(config)
    return BASELINES[config.backbone](schema.item_id.cardinality, schema.item_id.name)
