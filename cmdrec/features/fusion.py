"""Fusion strategies: per-position feature vectors (B, T, F, D) -> one vector (B, T, D).

- `sum`: add the feature vectors.
- `concat`: concatenate, then a two-layer MLP back to D.
- `gated`: a learned sigmoid gate per feature (from all of them) weighs each before summing.
- `attention`: self-attention across the F feature vectors of each position, then attention
  pooling with a learned query (the best fusion in Du et al., arXiv 2504.05319).
"""

from __future__ import annotations

import torch
from torch import nn


class SumFusion(nn.Module):
    def __init__(self, n_features: int, d_model: int, n_heads: int):
        super().__init__()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.sum(dim=2)


class ConcatFusion(nn.Module):
    def __init__(self, n_features: int, d_model: int, n_heads: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_features * d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.flatten(start_dim=2))


class GatedFusion(nn.Module):
    def __init__(self, n_features: int, d_model: int, n_heads: int):
        super().__init__()
        self.gate = nn.Linear(n_features * d_model, n_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.gate(features.flatten(start_dim=2)))  # (B, T, F)
        return (features * weights.unsqueeze(-1)).sum(dim=2)


class AttentionFusion(nn.Module):
    def __init__(self, n_features: int, d_model: int, n_heads: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.query = nn.Parameter(torch.randn(d_model) * 0.02)
        self.key = nn.Linear(d_model, d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, length, n_features, d_model = features.shape
        tokens = features.reshape(batch * length, n_features, d_model)
        mixed = self.norm(tokens + self.attention(tokens, tokens, tokens, need_weights=False)[0])
        scores = self.key(mixed) @ self.query / d_model**0.5  # (B*T, F)
        pooled = (torch.softmax(scores, dim=-1).unsqueeze(-1) * mixed).sum(dim=1)
        return pooled.reshape(batch, length, d_model)


FUSIONS = {"sum": SumFusion, "concat": ConcatFusion, "gated": GatedFusion, "attention": AttentionFusion}
