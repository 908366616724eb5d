"""The model builder: a recommender (or a baseline) from a model config and the data schema."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from cmdrec.config import ExpertsConfig, LayersConfig, ModelConfig, PretrainedConfig
from cmdrec.errors import InputError
from cmdrec.features.embeddings import InputBlock
from cmdrec.models.heads import ClassificationHead, HistoryCopy, TextScoringHead
from cmdrec.models.recommender import SequenceRecommender
from cmdrec.models.registry import component
from cmdrec.models.tokens import token_text_table
from cmdrec.schema import Schema, Tag

SECTIONS = {"layers": LayersConfig, "experts": ExpertsConfig, "pretrained": PretrainedConfig}


def resolve_sections(config: ModelConfig) -> ModelConfig:
    """The config with exactly the sections its backbone has (their defaults where unset) and the size
    of its position table, as a run saves it; a section its backbone does not have is refused."""
    spec = component(config.backbone)
    sections = {}
    for name, section in SECTIONS.items():
        given = getattr(config, name)
        if name in spec.sections:
            sections[name] = given or section()
        elif given is not None:
            has = ", ".join(spec.sections) or "none"
            raise InputError(f"model.{name}: backbone {config.backbone!r} has no such section (its sections: {has})")
    resolved = dataclasses.replace(config, positions=config.position_table, **sections)
    if resolved.pretrained is not None and not resolved.pretrained.path:
        raise InputError(f"model.backbone {config.backbone!r} needs model.pretrained.path (a directory or hub id)")
    return resolved


def is_neural(config: ModelConfig) -> bool:
    return component(config.backbone).neural


AUTO = "auto"


def resolve_input_features(config: ModelConfig, schema: Schema) -> ModelConfig:
    """`input_features: [auto]` becomes every side feature the data has (categorical and continuous
    columns beside the item id, in schema order), so one config runs on logs with and without
    timestamps; a named feature the data lacks is refused, saying which and how to drop it."""
    side = [
        c.name for c in schema.columns if (c.has(Tag.CATEGORICAL) or c.has(Tag.CONTINUOUS)) and not c.has(Tag.ITEM_ID)
    ]
    features = config.input_features
    if AUTO in features:
        if len(features) > 1:
            raise InputError(f"model.input_features: 'auto' stands alone, got {list(features)}")
        return dataclasses.replace(config, input_features=tuple(side))
    missing = [name for name in features if name not in schema.names]
    if missing:
        kept = [name for name in features if name not in missing]
        raise InputError(
            f"model.input_features {missing} are not in this data (it has {side}): drop them "
            f"(model.input_features=[{','.join(kept)}]) or use model.input_features=[auto]"
        )
    return config


def input_columns(config: ModelConfig, schema: Schema) -> list[str]:
    return [schema.item_id.name, *resolve_input_features(config, schema).input_features]


def model_columns(config: ModelConfig, schema: Schema) -> list[str]:
    """Columns a forward pass reads: the fused inputs and the extra inputs its backbone asks for."""
    extra = component(config.backbone).extra_inputs if is_neural(config) else ()
    missing = [name for name in extra if name not in schema.names]
    if missing:
        raise InputError(f"model.backbone {config.backbone!r} reads {missing}, which this data does not have")
    return list(dict.fromkeys([*input_columns(config, schema), *extra]))


def data_columns(config: ModelConfig, schema: Schema) -> list[str]:
    """Columns to load: what the model reads plus the labels of auxiliary tasks (targets come from them)."""
    return list(dict.fromkeys([*model_columns(config, schema), *config.aux_tasks]))


def build_model(
    config: ModelConfig, schema: Schema, text_table: torch.Tensor | None = None, decoder: nn.Module | None = None
) -> SequenceRecommender:
    """`text_table` (n_items, dim) is required when `config.text_embeddings` is set; `decoder`, the
    loaded pretrained decoder (see cmdrec.artifacts.adapters), when the backbone wraps one."""
    if not is_neural(config):
        raise InputError(f"{config.backbone!r} is a non-neural baseline; use build_baseline")
    config = resolve_sections(resolve_input_features(config, schema))
    spec = component(config.backbone)
    if not spec.feed_forward and config.layers is not None and (config.layers.ffn_dim or config.layers.ffn_activation):
        raise InputError(
            f"model.layers.ffn_dim / ffn_activation: backbone {config.backbone!r} has no feed-forward layer of its own"
        )
    if spec.pretrained_weights:
        if decoder is None:
            raise InputError(
                f"backbone {config.backbone!r} needs its decoder loaded by cmdrec.artifacts.adapters.load_decoder"
            )
        backbone = spec.build(config, decoder)
    else:
        backbone = spec.build(config)
    if config.masking == "clm" and not spec.is_causal(config.masking):
        raise InputError(
            f"model.backbone {config.backbone!r} is bidirectional: with clm masking position t would see its own "
            "target t+1 during training; use masking: mlm"
        )
    if "workflow_tokens" in schema.item_id.properties and config.masking != "clm":
        raise InputError("data with workflow tokens (features.workflows) trains with masking clm only")
    if config.history_copy and config.masking != "clm":
        raise InputError(
            "model.history_copy points at the events before each predicted one, which only clm masking keeps; "
            f"masking is {config.masking!r}"
        )
    item = schema.item_id
    if text_table is not None:
        text_table = token_text_table(text_table, schema)
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
        config.attention_heads,
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
    copy = HistoryCopy(config.d_model) if config.history_copy else None
    model_columns(config, schema)  # the extra inputs are in the data
    return SequenceRecommender(inputs, backbone, nn.ModuleDict(heads), copy, spec.extra_inputs)


def build_baseline(config: ModelConfig, schema: Schema):
    spec = component(config.backbone)
    if spec.neural:
        raise InputError(f"{config.backbone!r} is a neural backbone; use build_model")
    if "workflow_tokens" in schema.item_id.properties:  # its scores are counts: no sum of token probabilities
        raise InputError(f"{config.backbone!r} counts single commands: train it on data without features.workflows")
    return spec.build(schema.item_id.cardinality, schema.item_id.name)
