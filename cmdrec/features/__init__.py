"""Per-column embeddings built from the schema, and their fusion into one vector per event."""
