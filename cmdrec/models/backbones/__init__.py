"""Sequence encoders: (embeddings (B, T, D), padding mask (B, T)) -> (hidden states (B, T, D),
auxiliary outputs such as router logits).

Each has a `causal` attribute: whether position t sees only positions <= t."""

from cmdrec.config import ModelConfig


def feed_forward(config: ModelConfig, default_width: int, default_activation: str) -> tuple[int, str]:
    """A layer's feed-forward width and activation: the config's where set, else the backbone's own."""
    return config.ffn_dim or default_width, config.ffn_activation or default_activation
