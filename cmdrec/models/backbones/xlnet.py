"""XLNet (Transformers4Rec's default): bidirectional for `mlm`; for `clm` a permutation mask
lets position t attend only to positions <= t."""

import torch
from torch import nn
from transformers import XLNetConfig, XLNetModel

from cmdrec.config import ModelConfig
from cmdrec.models.backbones import feed_forward


class XLNetBackbone(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.causal = config.masking == "clm"
        width, activation = feed_forward(config, 4 * config.d_model, "gelu")
        self.model = XLNetModel(
            XLNetConfig(
                vocab_size=1,
                d_model=config.d_model,
                n_layer=config.layers.n_layers,
                n_head=config.layers.n_heads,
                d_inner=width,
                ff_activation=activation,
                dropout=config.dropout,
                attn_type="bi",
                use_mems_train=False,
                use_mems_eval=False,
                pad_token_id=None,
                bos_token_id=None,
                eos_token_id=None,
            )
        )

    def forward(self, embeddings, padding_mask):
        perm_mask = None
        if self.causal:
            length = embeddings.shape[1]
            future = torch.triu(torch.ones(length, length, device=embeddings.device), diagonal=1)
            perm_mask = future.expand(embeddings.shape[0], length, length)
        return self.model(
            inputs_embeds=embeddings, attention_mask=padding_mask.float(), perm_mask=perm_mask
        ).last_hidden_state, {}
