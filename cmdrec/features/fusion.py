"""Fusion strategies: per-position feature vectors (B, T, F, D) -> one vector (B, T, D).

- `sum`: add the feature vectors.
- `concat`: concatenate, then a two-layer MLP back to D.
- `gated`: a learned sigmoid gate per feature (from all of them) weighs each before summing.
- `attention`: self-attention across the F feature vectors of each position, then attention
  pooling with a learned query (the best fusion in Du et al., arXiv 2504.05319).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmdrec.errors import InputError


class SumFusion(nn.Module):
    def __init__(self, n_features: int, d_model: int, n_heads: int):
        super().__init__()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.sum(dim=2)


class ConcatFusion(nn.Module):
    def __init__(self, n_features: int, d_model: int, n_heads: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(n_features * d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model)
        )

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
    # One fused QKV projection and scaled_dot_product_attention over (B*T) sequences of F tokens,
    # lighter per call than nn.MultiheadAttention. Still a large share of a step: it attends over
    # F tokens for every event.
    def __init__(self, n_features: int, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise InputError(f"model.d_model {d_model} is not divisible by {n_heads} heads (attention fusion)")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.query = nn.Parameter(torch.randn(d_model) * 0.02)
        self.key = nn.Linear(d_model, d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, length, n_features, d_model = features.shape
        tokens = features.reshape(batch * length, n_features, d_model)
        q, k, v = self.qkv(tokens).view(batch * length, n_features, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch * length, n_features, d_model)
        mixed = self.norm(tokens + self.out(attended))
        scores = self.key(mixed) @ self.query / d_model**0.5  # (B*T, F)
        pooled = (torch.softmax(scores, dim=-1).unsqueeze(-1) * mixed).sum(dim=1)
        return pooled.reshape(batch, length, d_model)


FUSIONS = {"sum": SumFusion, "concat": ConcatFusion, "gated": GatedFusion, "attention": AttentionFusion}


def register_fusion(name: str, fusion: type[nn.Module]) -> type[nn.Module]:
    """Make `model.fusion: NAME` build `fusion(n_features, d_model, n_heads)`, a module mapping
    (B, T, F, D) feature vectors to (B, T, D); the name must be new."""
    if name in FUSIONS:
        raise InputError(f"a fusion named {name!r} is registered already")
    FUSIONS[name] = fusion
    return fusion
