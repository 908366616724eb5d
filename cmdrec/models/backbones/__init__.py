"""Sequence encoders: (embeddings (B, T, D), padding mask (B, T)) -> hidden states (B, T, D).

Each has a `causal` attribute: whether position t sees only positions <= t."""
