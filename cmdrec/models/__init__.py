"""Backbones, heads and the recommender that composes them. Models return logits and auxiliary
outputs; they never compute losses or touch files."""
