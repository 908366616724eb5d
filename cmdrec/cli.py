"""The `cmdrec` command: argv -> config -> library. The only module that reads argv."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cmdrec.config import DataConfig, apply_overrides, from_dict, load_data_config, to_dict
from cmdrec.errors import InputError

SAMPLE_DIR = "data/sample"


def _data_parser(command: str, help_text: str, subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(command, help=help_text, description=help_text)
    parser.add_argument("--config", default=None, help="data config YAML (default: the bundled sample, as configs/data/sample.yaml)")
    parser.add_argument("overrides", nargs="*", help="config overrides such as processing.session_gap_minutes=10")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmdrec", description="Next-command recommendation from application usage logs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="write the bundled simulated BIM/CAD log (events.csv, catalogue.csv)")
    sample.add_argument("--out", default=SAMPLE_DIR)
    sample.add_argument("--users", type=int, default=60)
    sample.add_argument("--seed", type=int, default=7)
    _data_parser("process", "raw command log -> cleaned sessions, with a report of every filter", sub)
    _data_parser("preprocess", "sessions -> split -> fitted feature workflow -> sequences + schema.json", sub)
    _data_parser("quickstart", "generate the sample log (if missing), process and preprocess it", sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _config(args) -> DataConfig:
    if args.config:
        return load_data_config(args.config, args.overrides)
    from cmdrec.data.synthetic import sample_config

    return from_dict(DataConfig, apply_overrides(to_dict(sample_config(SAMPLE_DIR)), args.overrides))


def run_sample(args) -> int:
    from cmdrec.data.synthetic import write_sample

    events, catalogue = write_sample(args.out, users=args.users, seed=args.seed)
    print(f"wrote {events} and {catalogue}")
    return 0


def run_process(args) -> int:
    from cmdrec.data.pipeline import process_logs
    from cmdrec.report import format_processing

    config = _config(args)
    print(format_processing(process_logs(config), config.processed_dir))
    return 0


def run_preprocess(args) -> int:
    from cmdrec.data.pipeline import preprocess
    from cmdrec.report import format_preprocess

    config = _config(args)
    print(format_preprocess(preprocess(config), config.preprocessed_dir))
    return 0


def run_quickstart(args) -> int:
    if not args.config and not Path(SAMPLE_DIR, "events.csv").exists():
        run_sample(argparse.Namespace(out=SAMPLE_DIR, users=60, seed=7))
    run_process(args)
    run_preprocess(args)
    return 0


COMMANDS = {"sample": run_sample, "process": run_process, "preprocess": run_preprocess, "quickstart": run_quickstart}

if __name__ == "__main__":
    raise SystemExit(main())
