"""Commands on logs and prepared data: sample, process, preprocess, quickstart, mine, embed, vocab."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmdrec.cli.common import SAMPLE_DIR, data_config, data_parser, metrics_line
from cmdrec.config import TrainingConfig


def add_commands(sub) -> None:
    sample = sub.add_parser("sample", help="write the bundled simulated BIM/CAD log (events.csv, catalogue.csv)")
    sample.add_argument("--out", default=SAMPLE_DIR)
    sample.add_argument("--users", type=int, default=60)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument(
        "--events", type=int, default=None, help="write a log of N events in shards instead (for measuring scale)"
    )
    sample.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="of the shards (csv: .csv.gz)")
    sample.add_argument("--shard-events", type=int, default=10_000_000, help="events per shard")
    sample.set_defaults(handler=run_sample)

    process = data_parser("process", "raw command log -> cleaned sessions, with a report of every filter", sub)
    process.set_defaults(handler=run_process)

    preprocess = data_parser(
        "preprocess", "sessions -> split -> fitted feature workflow -> sequences + schema.json", sub
    )
    preprocess.set_defaults(handler=run_preprocess)

    quickstart = data_parser(
        "quickstart",
        "generate the sample log (if missing), process and preprocess it, train and evaluate two models",
        sub,
    )
    quickstart.set_defaults(handler=run_quickstart)

    mine = data_parser("mine", "find commands that almost always accompany another (candidate redundant pairs)", sub)
    mine.add_argument("--window", type=int, default=1, help="events either side that count as together")
    mine.add_argument("--min-count", type=int, default=20, help="ignore commands rarer than this")
    mine.add_argument("--top", type=int, default=50, help="pairs in the Markdown table")
    mine.add_argument("--out", default=None, help="default: the config's processed_dir/mining")
    mine.set_defaults(handler=run_mine)

    embed = data_parser(
        "embed", "embed every command's text (optionally LLM-augmented) -> text_embeddings.safetensors", sub
    )
    embed.set_defaults(handler=run_embed)

    vocab = sub.add_parser("vocab", help="the command vocabulary: ids, categories, train counts, OOV mapping")
    vocab.add_argument("path", help="a preprocessed data directory or a bundle")
    vocab.add_argument("--search", default=None, help="only commands whose name or category contains TEXT")
    vocab.add_argument("--csv", default=None, help="write the table to this CSV file instead")
    vocab.set_defaults(handler=run_vocab)


def run_sample(args) -> int:
    from cmdrec.data.synthetic import write_large_sample, write_sample

    if getattr(args, "events", None):
        shards = write_large_sample(args.out, args.events, args.format, args.shard_events, seed=args.seed)
        print(f"wrote {args.events:,} events in {len(shards)} shard(s) and catalogue.csv to {args.out}")
        print(
            f"process them with: cmdrec process source.path={args.out}/events catalogue.path={args.out}/catalogue.csv "
            "source.timestamp_format=null processing.noise_preset=sample"
        )
        return 0
    events, catalogue = write_sample(args.out, users=args.users, seed=args.seed)
    print(f"wrote {events} and {catalogue}")
    return 0


def run_process(args) -> int:
    from cmdrec.data.pipeline import process_logs
    from cmdrec.report import format_processing

    config = data_config(args)
    print(format_processing(process_logs(config), config.processed_dir))
    return 0


def run_preprocess(args) -> int:
    from cmdrec.data.pipeline import preprocess
    from cmdrec.report import format_preprocess

    config = data_config(args)
    print(format_preprocess(preprocess(config), config.preprocessed_dir))
    return 0


# the sample is small (24k training events): at the library's default learning rate and 8 epochs the
# transformer was under-trained and lost to the Markov chain (benchmarks/quickstart_sample.py)
QUICKSTART_GPT2 = TrainingConfig(epochs=20, learning_rate=3e-3, warmup_steps=10, early_stopping_patience=None)


def run_quickstart(args) -> int:
    """Sample log -> sessions -> sequences -> a Markov chain and a small GPT-2, trained and evaluated."""
    from cmdrec.config import ModelConfig, RunConfig
    from cmdrec.experiments.suite import run_suite

    if not args.config and not Path(SAMPLE_DIR, "events.csv").exists():
        run_sample(argparse.Namespace(out=SAMPLE_DIR, users=60, seed=7))
    run_process(args)
    run_preprocess(args)
    data_dir = data_config(args).preprocessed_dir
    runs = [
        RunConfig(name="quickstart-markov", data_dir=data_dir, model=ModelConfig(backbone="markov")),
        RunConfig(name="quickstart-gpt2", data_dir=data_dir, training=QUICKSTART_GPT2),
    ]
    epochs, rate = QUICKSTART_GPT2.epochs, QUICKSTART_GPT2.learning_rate
    print(f"== train and evaluate: first-order Markov chain, GPT-2 (d 64, 2 layers, {epochs} epochs at {rate:g})")
    for row in run_suite(runs, "runs/quickstart", "Quickstart on the bundled sample", show_progress=False):
        print(metrics_line(f"{row['model']} test (last item)", row["test_last"]))
    if not args.config:  # the example history is made of the sample's commands
        from cmdrec.serving import Predictor

        history = ["Open", "ZoomExtents", "Wall", "Wall", "Door"]
        run_dir = Path(runs[1].runs_dir) / runs[1].name
        answer = Predictor(run_dir).recommend(history, k=3)
        print(f"== cmdrec recommend {run_dir} --history {' '.join(history)} -k 3\n   " + ", ".join(answer.commands))
    print(
        "wrote runs/quickstart/results.md; next: cmdrec runs, cmdrec train --config configs/baselines/gpt2.yaml,\n"
        "   cmdrec export runs/quickstart-gpt2 --out bundles/gpt2 && cmdrec serve bundles/gpt2"
        "  (then open http://127.0.0.1:8000)"
    )
    return 0


def run_mine(args) -> int:
    from cmdrec.data.mining import mine_pairs, write_mined
    from cmdrec.data.presets import noise_commands
    from cmdrec.data.readers import read_events
    from cmdrec.data.sessions import split_sessions

    config = data_config(args)
    events, _ = read_events(config.source)
    sessions = split_sessions(events, config.processing.session_gap_minutes)
    pairs = mine_pairs(sessions, args.window, args.min_count)
    out = args.out or str(Path(config.processed_dir) / "mining")
    processing = config.processing
    ranks = write_mined(pairs, out, args.top, noise_commands(processing.noise_preset, processing.noise_commands))
    for row in pairs.head(10).iter_rows(named=True):
        print(
            f"{row['rank']:>4}. {row['accompanying']} with {row['main']}: confidence {row['confidence']:.3f}, "
            f"lift {row['lift']:.1f}, {row['together']:,} of {row['occurrences']:,}"
        )
    if ranks:
        found = sorted((v["rank"], k) for k, v in ranks.items() if v)
        print(f"noise commands of the config among the candidates: {len(found)} of {len(ranks)}, at ranks "
              f"{[r for r, _ in found]}")  # fmt: skip
    print(f"wrote {out}/redundant_pairs.md and redundant_pairs.parquet ({pairs.height:,} pairs)")
    return 0


def run_embed(args) -> int:
    from cmdrec.text.pipeline import embed_commands

    config = data_config(args)
    report = embed_commands(config.preprocessed_dir, config.text)
    shared = report["commands"] - report["distinct_texts"]
    same = f" ({shared} command(s) share a text with another, embedded once)" if shared else ""
    print(
        f"embedded {report['commands']} commands with {report['provider']} {report['model']} "
        f"({report['dimension']} dimensions): {report['distinct_texts']} distinct texts{same}, "
        f"{report['embedded_now']} new, {report['from_cache']} from cache (in {report['cache_dir']}); "
        f"wrote {report['path']}"
    )
    if report["described"] < report["commands"]:
        print(
            f"note: {report['commands'] - report['described']} command(s) have no description in the catalogue and "
            "were embedded from their bare names; give a catalogue with descriptions, or text.augment=true"
        )
    if report["label_columns"]:
        print(
            "LLM label columns (usable in model.aux_tasks): "
            + ", ".join(f"{name} ({n} values)" for name, n in report["label_columns"].items())
        )
    return 0


def run_vocab(args) -> int:
    import polars as pl

    from cmdrec.data.dataset import PreparedDataset

    table = PreparedDataset(args.path).vocabulary()
    if args.search:
        text = args.search.lower()
        table = table.filter(
            pl.col("command").str.to_lowercase().str.contains(text, literal=True)
            | pl.col("category").fill_null("").str.to_lowercase().str.contains(text, literal=True)
        )
    if args.csv:
        table.write_csv(args.csv)
        print(f"wrote {table.height} commands to {args.csv}")
        return 0
    in_vocabulary = table.filter(pl.col("maps_to").is_null())
    rows = [
        (
            row["id"],
            row["command"] if row["maps_to"] is None else f"{row['command']} (-> {row['maps_to']})",
            row["category"] or "-",
            "-" if row["train_count"] is None else f"{row['train_count']:,}",
        )
        for row in table.iter_rows(named=True)
    ]
    name_width = max([len("command"), *(len(r[1]) for r in rows)]) + 2
    category_width = max([len("category"), *(len(r[2]) for r in rows)]) + 2
    print(f"{'id':>5}  {'command':<{name_width}}{'category':<{category_width}}{'train count':>12}")
    for number, name, category, count in rows:
        print(f"{number:>5}  {name:<{name_width}}{category:<{category_width}}{count:>12}")
    print(f"{in_vocabulary.height} commands with ids, {table.height - in_vocabulary.height} mapped to the OOV id")
    return 0
