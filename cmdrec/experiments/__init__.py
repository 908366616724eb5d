"""The research harness: comparisons, suites, sweeps, analyses and plots. Imported only by the CLI
commands that need it and by scripts, so training and serving never load matplotlib, optuna or process pools."""
