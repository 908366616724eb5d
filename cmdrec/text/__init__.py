"""Command descriptions -> (optionally LLM-augmented) text -> embeddings cached on disk."""
