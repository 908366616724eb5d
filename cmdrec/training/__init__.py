"""Training and evaluation: the loop, schedules, checkpoints, metrics and run bookkeeping."""
