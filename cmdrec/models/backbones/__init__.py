"""Sequence encoders: (embeddings (B, T, D), padding mask (B, T)) -> (hidden states (B, T, D),
auxiliary outputs such as router logits).

Each has a `causal` attribute: whether position t sees only positions <= t."""
