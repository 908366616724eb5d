"""Llama decoder trained from scratch: causal attention, rotary positions, RMSNorm, SwiGLU."""

from torch import nn
from transformers import LlamaConfig, LlamaModel

from cmdrec.config import ModelConfig
from cmdrec.models.backbones import feed_forward, lean


class LlamaBackbone(nn.Module):
    causal = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        width, activation = feed_forward(config, 4 * config.d_model, "silu")
        self.model = LlamaModel(
            LlamaConfig(
                vocab_size=1,
                hidden_size=config.d_model,
                intermediate_size=width,
                hidden_act=activation,
                num_hidden_layers=config.layers.n_layers,
                num_attention_heads=config.layers.n_heads,
                num_key_value_heads=config.layers.n_heads,
                max_position_embeddings=config.position_table,
                attention_dropout=config.dropout,
                bos_token_id=None,
                eos_token_id=None,
                pad_token_id=None,
            )
        )

    def forward(self, embeddings, padding_mask):
        if lean.applies(self.model, embeddings, padding_mask):
            return lean.decoder_forward(self.model, embeddings)[0], {}
        # use_cache=False: whole sequences are scored and never generated, so a key/value cache is wasted work
        return self.model(
            inputs_embeds=embeddings, attention_mask=padding_mask.long(), use_cache=False
        ).last_hidden_state, {}
