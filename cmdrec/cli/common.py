"""What the command groups share: the data-config options, and one line of metrics."""

from __future__ import annotations

import argparse

from cmdrec.config import DataConfig, apply_overrides, from_dict, load_data_config, to_dict
from cmdrec.errors import InputError

SAMPLE_DIR = "data/sample"
BASELINE_CONFIGS = "configs/baselines"


def data_parser(command: str, help_text: str, subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(command, help=help_text, description=help_text)
    parser.add_argument(
        "--config", default=None, help="data config YAML (default: the bundled sample, as configs/data/sample.yaml)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides such as processing.session_gap_minutes=10")
    return parser


def data_config(args) -> DataConfig:
    if args.config:
        return load_data_config(args.config, args.overrides)
    from cmdrec.data.synthetic import sample_config

    return from_dict(DataConfig, apply_overrides(to_dict(sample_config(SAMPLE_DIR)), args.overrides))


def metrics_line(label: str, metrics: dict) -> str:
    keys = [k for k in ("ndcg@10", "recall@10", "mrr@10", "ndcg@3", "recall@3") if k in metrics]
    return f"{label}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def parse_attributes(pairs: list[str]) -> dict[str, str]:
    malformed = [a for a in pairs if "=" not in a]
    if malformed:
        raise InputError(f"--attribute: expected NAME=VALUE, got {malformed[0]!r}")
    return dict(a.split("=", 1) for a in pairs)
