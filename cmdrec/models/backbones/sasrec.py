"""SASRec (Kang & McAuley, ICDM 2018) built as its reference code builds a block, which GPT-2 does
not: the attention output is added to the LayerNorm'd query rather than to the block's input, the
feed-forward layer is as wide as the model with ReLU, and a last LayerNorm follows the blocks.
Learned positions; causal."""

import torch
from torch import nn

from cmdrec.config import ModelConfig
from cmdrec.models.backbones import feed_forward

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
LAYERNORM_EPS = 1e-8  # the reference's; PyTorch's default is 1e-5


class SASRecBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ffn_width: int, activation: str, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model, eps=LAYERNORM_EPS)
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(d_model, eps=LAYERNORM_EPS)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_width),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(ffn_width, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, hidden: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        query = self.attention_norm(hidden)
        attended, _ = self.attention(query, hidden, hidden, attn_mask=causal_mask, need_weights=False)
        hidden = self.ffn_norm(query + attended)
        return hidden + self.ffn(hidden)


class SASRecBackbone(nn.Module):
    causal = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        width, activation = feed_forward(config, config.d_model, "relu")
        self.positions = nn.Embedding(config.position_table, config.d_model)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(config.d_model, config.layers.n_heads, width, activation, config.dropout)
            for _ in range(config.layers.n_layers)
        )
        self.final_norm = nn.LayerNorm(config.d_model, eps=LAYERNORM_EPS)
        for module in self.modules():  # N(0, 0.02) as GPT-2 and the reference initialise
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, embeddings, padding_mask):
        # right padding: a real position attends only to earlier real ones, so the causal mask suffices
        length = embeddings.shape[1]
        hidden = self.input_dropout(embeddings + self.positions.weight[:length])
        causal_mask = torch.ones(length, length, dtype=torch.bool, device=embeddings.device).triu(1)
        for block in self.blocks:
            hidden = block(hidden, causal_mask)
        return self.final_norm(hidden), {}
