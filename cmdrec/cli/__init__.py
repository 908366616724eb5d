"""The `cmdrec` command: argv -> config -> library. The only package that reads argv; one module per
group of commands, each adding its subcommands with the function that runs them."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cmdrec.cli import data, experiments, models, serving
from cmdrec.errors import InputError
from cmdrec.plugins import load_plugins

GROUPS = (data, models, serving, experiments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmdrec", description="Next-command recommendation from application usage logs."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`cmdrec serve B --port 9000 batch_size=32`); anything else is an error
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        quiet_libraries()
    try:
        load_plugins()
        return args.handler(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


# libraries that report every request, load or optional kernel they lack; `--verbose` shows them
NOISY_LOGGERS = ("httpx", "httpcore", "openai", "bitsandbytes", "sentence_transformers", "urllib3", "distributed")


def quiet_libraries() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if name != "bitsandbytes" else logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported
