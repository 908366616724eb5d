"""GPT-2 decoder (SASRec-style): causal self-attention with learned positions. Uses PyTorch's
native GELU rather than GPT-2's composed tanh approximation, which costs several kernels."""

from torch import nn
from transformers import GPT2Config, GPT2Model

from cmdrec.config import ModelConfig
from cmdrec.models.backbones import feed_forward


class GPT2Backbone(nn.Module):
    causal = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        width, activation = feed_forward(config, 4 * config.d_model, "gelu")
        self.model = GPT2Model(
            GPT2Config(
                vocab_size=1,
                n_positions=config.position_table,
                n_embd=config.d_model,
                n_layer=config.layers.n_layers,
                n_head=config.layers.n_heads,
                n_inner=width,
                activation_function=activation,
                resid_pdrop=config.dropout,
                embd_pdrop=config.dropout,
                attn_pdrop=config.dropout,
                bos_token_id=None,
                eos_token_id=None,
            )
        )

    def forward(self, embeddings, padding_mask):
        # use_cache=False: whole sequences are scored and never generated, so a key/value cache is wasted work
        return self.model(
            inputs_embeds=embeddings, attention_mask=padding_mask.long(), use_cache=False
        ).last_hidden_state, {}
