"""What a trained model is on disk: run directories (checkpoints, logs, status), bundles (a model
that can be copied anywhere and served), and loading either back into a model."""
