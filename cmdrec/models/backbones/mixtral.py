"""Mixtral-style mixture-of-experts decoder: every layer routes each token to its top-k experts.
The router logits come back as an auxiliary output; the load-balancing loss is computed outside."""

from torch import nn
from transformers import MixtralConfig, MixtralModel

from cmdrec.config import ModelConfig
from cmdrec.models.backbones import feed_forward, lean


class MixtralBackbone(nn.Module):
    causal = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        width, activation = feed_forward(config, 2 * config.d_model, "silu")
        self.model = MixtralModel(
            MixtralConfig(
                vocab_size=1,
                hidden_size=config.d_model,
                intermediate_size=width,
                hidden_act=activation,
                num_hidden_layers=config.layers.n_layers,
                num_attention_heads=config.layers.n_heads,
                num_key_value_heads=config.layers.n_heads,
                num_local_experts=config.experts.n_experts,
                num_experts_per_tok=config.experts.experts_per_token,
                max_position_embeddings=config.position_table,
                attention_dropout=config.dropout,
                output_router_logits=True,
                bos_token_id=None,
                eos_token_id=None,
                pad_token_id=None,
            )
        )

    def forward(self, embeddings, padding_mask):
        if lean.applies(self.model, embeddings, padding_mask):
            hidden, router_logits = lean.decoder_forward(self.model, embeddings)
            return hidden, {"router_logits": router_logits}
        # use_cache=False: whole sequences are scored and never generated, so a key/value cache is wasted work
        output = self.model(
            inputs_embeds=embeddings, attention_mask=padding_mask.long(), output_router_logits=True, use_cache=False
        )
        return output.last_hidden_state, {"router_logits": list(output.router_logits)}
