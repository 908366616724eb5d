"""Learning-rate schedules as pure functions of the step."""

import math

SCHEDULES = ("cosine", "linear", "constant")


def effective_warmup(warmup_steps: int, warmup_ratio: float, total_steps: int) -> int:
    """Warm-up bounded by a share of the run, so a short run is not spent warming up."""
    return min(warmup_steps, int(warmup_ratio * total_steps))


def lr_multiplier(
    step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0, schedule: str = "cosine"
) -> float:
    """Multiplier of the base learning rate: linear from 0 to 1 over `warmup_steps`, then `schedule`
    (cosine or linear down to `min_ratio`, or constant)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "constant":
        return 1.0
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay
