"""Commands that serve a bundle: serve, predict, watch."""

from __future__ import annotations

import sys
from pathlib import Path

from cmdrec.cli.common import parse_attributes
from cmdrec.config import apply_overrides, from_dict
from cmdrec.errors import InputError


def add_commands(sub) -> None:
    serve = sub.add_parser(
        "serve", help="serve a bundle (or a finished run) over HTTP, with live sessions and a demo page"
    )
    serve.add_argument("path", help="bundle directory (from `cmdrec export`) or run directory")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("overrides", nargs="*", help="serving settings such as batch_size=32 max_sessions=50000")
    serve.set_defaults(handler=run_serve)

    predict = sub.add_parser("predict", help="score every history of a file (batch prediction) into a Parquet file")
    predict.add_argument("path", help="bundle directory or run directory")
    predict.add_argument(
        "--input", required=True, help="histories: .jsonl, .parquet (history lists) or .csv (one event a row)"
    )
    predict.add_argument("--output", required=True, help="suggestions.parquet")
    predict.add_argument("-k", type=int, default=10)
    predict.add_argument("--chunk-size", type=int, default=512, help="histories scored per forward pass")
    predict.add_argument("--device", default="cpu")
    predict.set_defaults(handler=run_predict)

    watch = sub.add_parser("watch", help="follow a growing log file and show the next-command suggestions")
    watch.add_argument("logfile", help="a plain CSV (with header) or JSONL log being appended")
    target = watch.add_mutually_exclusive_group(required=True)
    target.add_argument("--server", help="URL of a running `cmdrec serve`, e.g. http://127.0.0.1:8000")
    target.add_argument("--bundle", help="score in this process with a bundle or run directory")
    watch.add_argument("--session", default=None, help="live-session id (default: the log file's name)")
    watch.add_argument("--command-column", default="command")
    watch.add_argument("--timestamp-column", default="timestamp", help="'' when the log has none")
    watch.add_argument("--timestamp-format", default=None, help="strptime format (default: ISO 8601)")
    watch.add_argument(
        "--attribute", action="append", default=[], metavar="NAME=VALUE", help="event attribute; repeatable"
    )
    watch.add_argument("--from-end", action="store_true", help="skip what the log already holds")
    watch.add_argument("-k", type=int, default=5)
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    watch.add_argument("--max-seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    watch.set_defaults(handler=run_watch)


def run_serve(args) -> int:
    from cmdrec.config import ServingConfig
    from cmdrec.serving.service import serve

    settings = apply_overrides({}, args.overrides)
    settings.update({k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
    try:
        config = from_dict(ServingConfig, settings, "serving.")
    except InputError as error:
        raise InputError(f"serve: {error}") from error
    serve(args.path, config)
    return 0


def run_predict(args) -> int:
    from cmdrec.serving.batch import predict_file
    from cmdrec.serving.predict import Predictor

    report = predict_file(Predictor(args.path, args.device), args.input, args.output, args.k, args.chunk_size)
    print(f"scored {report['scored']:,} of {report['histories']:,} histories; wrote {args.output}")
    if report["bad_rows"]:
        print(f"{report['bad_rows']:,} bad row(s), their error in the output's error column:", file=sys.stderr)
        for line in report["errors"]:
            print(f"  {line}", file=sys.stderr)
    return 0


def run_watch(args) -> int:
    from cmdrec.serving.watch import LogFollower, LogFormat, bundle_sink, print_suggestions, server_sink, watch

    attributes = parse_attributes(args.attribute) or None
    log_format = LogFormat(args.command_column, args.timestamp_column or None, args.timestamp_format)
    follower = LogFollower(args.logfile, log_format, from_start=not args.from_end)
    session = args.session or Path(args.logfile).name
    if args.server:
        send = server_sink(args.server, session, args.k, attributes)
    else:
        send = bundle_sink(args.bundle, args.k, attributes)
    print(f"watching {args.logfile} (session {session}); Ctrl-C to stop", flush=True)
    try:
        watch(follower, send, print_suggestions, args.interval, max_seconds=args.max_seconds)
    except KeyboardInterrupt:
        pass
    return 0
