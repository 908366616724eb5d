"""Print the Markdown tables of the docs from their results files, so the figures quoted are the
measured ones, never retyped. In the docs and README each table sits between
`<!-- table: NAME -->` and `<!-- /table -->`; `--write` regenerates those blocks and `--check`
fails when one is stale (the test suite runs it).

    python benchmarks/tables.py --write | --check
    python benchmarks/tables.py [baselines_vs] [full_vs] [full_vs_10ep] [full_vs_copy] [full_vs_gpu]
        [full_vs_developer] [ablation_developer] [context_length_gpu] [beauty] [new_commands_sample] [new_commands_vs]
        [serving] [serving_http] [data_scale] [nvtabular_peer] [peer_t4rec] [llm_backbones] [train_scale]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Beauty runs that repeat another's config with only the seed (and thread count, patience) changed
BEAUTY_SEED_REPEATS = [
    ("beauty_e20", "beauty_e20_seed1", "beauty_e20_seed2"),
    ("beauty_sasrec_reference", "beauty_sasrec_reference_seed1", "beauty_sasrec_reference_seed2"),
    ("beauty_gpt2_reference", "beauty_gpt2_reference_seed1", "beauty_gpt2_reference_seed2"),
    ("beauty_d128", "beauty_d128_seed1", "beauty_d128_seed2"),
]


def baselines_vs() -> str:
    """One table per split, models by test NDCG@10 on the last item of each session."""
    report = json.loads((RESULTS / "baselines_vs.json").read_text())
    tables = []
    for split_name, split in report["splits"].items():
        counts = " / ".join(f"{split['split'][part]['sessions']:,}" for part in ("train", "valid", "test"))
        lines = [
            f"Split `{split_name}` ({split['split']['method']}, seed {split['split']['seed']}): {counts} train "
            f"/ valid / test "
            f"sessions; `{split['command']}`, measured {split['measured_at'][:10]}:",
            "",
            "| model | NDCG@10 last | Recall@10 last | MRR@10 last | NDCG@10 all positions | s/epoch | seq/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, entry in sorted(split["models"].items(), key=lambda item: -item[1]["ndcg@10"]):
            all_positions = (
                "(last only)" if entry.get("masking") == "mlm" else f"{entry['all_positions']['ndcg@10']:.4f}"
            )
            speed = (
                f"{entry['seconds_per_epoch']:.0f} | {entry['sequences_per_second']:.0f}"
                if entry.get("sequences_per_second")
                else "- | -"
            )
            lines.append(
                f"| {name} | {entry['ndcg@10']:.4f} | {entry['recall@10']:.4f} | {entry['mrr@10']:.4f} | "
                f"{all_positions} | {speed} |"
            )
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def full_vs(results: str) -> str:
    report = json.loads((RESULTS / f"{results}.json").read_text())
    ablations = f"ablations seeds {report['ablation_seeds']}" if report["ablation_seeds"] else "no ablation rows"
    machine = report["machine"]["gpu"] or f"{report['machine']['cpus']} CPU cores"
    lines = [
        f"`{report['command']}` on {machine} ({report['epochs']} epochs, seeds {report['seeds']}, {ablations}; "
        "mean ± std over seeds, test, last item of each session):",
        "",
        "| model | role | seeds | NDCG@10 | Recall@10 | MRR@10 | NDCG@3 | head NDCG@10 | torso NDCG@10 | tail "
        "NDCG@10 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in report["models"].items():
        cells = [
            f"{entry['mean'][m]:.4f} ± {entry['std'][m]:.4f}" for m in ("ndcg@10", "recall@10", "mrr@10", "ndcg@3")
        ]
        cells += [
            f"{entry['buckets_mean'][b]:.4f}" if b in entry["buckets_mean"] else "-" for b in ("head", "torso", "tail")
        ]
        lines.append(f"| {name} | {entry['role']} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    summary = report["summary"]
    train_seconds = sum(
        run.get("train_seconds", 0) for entry in report["models"].values() for run in entry["seeds"].values()
    )
    gains = ", ".join(f"{b} {g:+.4f}" for b, g in summary.get("bucket_gain", {}).items())
    lines += [
        "",
        f"Full model vs best baseline ({summary.get('best_baseline')}): NDCG@10 "
        f"{summary.get('relative_ndcg@10_gain', float('nan')):+.1%} "
        f"relative (target +5%); absolute NDCG@10 difference by bucket: {gains}. Target met: {report['meets_target']}. "
        f"Training time summed over runs {train_seconds / 60:.0f} min; this invocation's wall time "
        f"{report['wall_seconds'] / 60:.0f} min "
        "(runs already finished are reloaded and evaluated, not retrained).",
    ]
    return "\n".join(lines)


def beauty() -> str:
    """Every Beauty run measured (beauty.json and any beauty_<variant>.json), one row each."""
    reports = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("beauty*.json"))]
    reports = [report for report in reports if "models" in report]  # not beauty_coverage.json
    if not reports:
        raise FileNotFoundError(2, "no Beauty results", str(RESULTS / "beauty.json"))
    published = reports[0]["published_sasrec_full_ce"]
    lines = [
        f"{reports[0]['protocol']}; {reports[0]['split']['users']} users:",
        "",
        "| command | NDCG@10 | Recall@10 | MRR@10 | valid NDCG@10 | epochs | s/epoch | train s | device |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for report in reports:
        for entry in report["models"].values():
            lines.append(
                f"| `{report['command']}` | {entry['ndcg@10']:.4f} | {entry['recall@10']:.4f} | "
                f"{entry['mrr@10']:.4f} | "
                f"{entry['valid']['ndcg@10']:.4f} | {entry['epochs_run']} | {entry['seconds_per_epoch']:.0f} | "
                f"{entry['train_seconds']:.0f} | {entry['device']} |"
            )
    lines.append(
        f"| published SASRec, full cross-entropy | {published['ndcg@10']} | {published['recall@10']} | | | | | | |"
    )
    for first, *repeats in BEAUTY_SEED_REPEATS:
        found = beauty_seeds(first, *repeats)
        if found is not None:
            seeds, spread = found
            lines += [
                "",
                f"`{first}` repeated with other seeds ({', '.join(repeats)}): seeds {seeds}, "
                f"test NDCG@10 {spread['ndcg@10'][0]:.4f} ± {spread['ndcg@10'][1]:.4f}, "
                f"Recall@10 {spread['recall@10'][0]:.4f} ± {spread['recall@10'][1]:.4f} (mean ± std).",
            ]
    return "\n".join(lines)


def beauty_seeds(*names: str) -> tuple[list[int], dict] | None:
    """The seeds of a Beauty run repeated under `names`, and (mean, std) of its test NDCG@10 and Recall@10."""
    paths = [RESULTS / f"{name}.json" for name in names]
    if not all(path.is_file() for path in paths):
        return None
    runs = [json.loads(path.read_text()) for path in paths]
    entries = [next(iter(run["models"].values())) for run in runs]
    spread = {
        m: (statistics.mean(e[m] for e in entries), statistics.stdev(e[m] for e in entries))
        for m in ("ndcg@10", "recall@10")
    }
    return [run["seed"] for run in runs], spread


def headline() -> str:
    """The README's headline table, each figure from its results file."""
    developer = load_result("full_vs_developer")
    summary = developer["summary"]
    full, best = (developer["models"][summary[k]] for k in ("full", "best_baseline"))

    def spread(entry: dict) -> str:
        return f"{entry['mean']['ndcg@10']:.4f} ± {entry['std']['ndcg@10']:.4f}"

    _, beauty_d128 = beauty_seeds(*BEAUTY_SEED_REPEATS[-1])
    published = load_result("beauty_d128")["published_sasrec_full_ce"]
    peer = load_result("peer_t4rec")
    fastest = peer.get("best_at_equal_ndcg") or {"row": "cmdrec", "throughput_ratio": peer["throughput_ratio"]}
    http = load_result("serving_http")
    p99, target = http["targets"]["p99_ms_at_100_single_per_s"], http["targets"]["p99_target_ms"]
    equal = "equal" if round(http["served_recall@10"], 6) == round(http["offline_recall@10"], 6) else "different"
    rows = [
        (
            f"full model + developer feature vs best baseline ({summary['best_baseline'].title()}), VS logs, "
            f"{len(full['seeds'])} seeds",
            f"NDCG@10 {spread(full)} vs {spread(best)} ({summary['relative_ndcg@10_gain']:+.1%})",
            "[full model](docs/benchmarks/full_model.md)",
        ),
        (
            "SASRec-style GPT-2 (width 128) on Amazon Beauty vs the published SASRec figures",
            f"NDCG@10 {beauty_d128['ndcg@10'][0]:.4f} ± {beauty_d128['ndcg@10'][1]:.4f} vs {published['ndcg@10']}",
            "[Beauty](docs/benchmarks/beauty.md)",
        ),
        (
            "training throughput vs Transformers4Rec 23.12: the fastest cmdrec configuration at least as accurate, "
            "same data and model size, one run each",
            f"{fastest['throughput_ratio']:.2f}x ({fastest['row']}; goal 2x"
            + (", met)" if fastest["throughput_ratio"] >= 2 else ", not reached)"),
            "[peers](docs/benchmarks/baselines.md)",
        ),
        (
            "served vs offline Recall@10, every VS test session, over HTTP",
            f"{equal} ({http['served_recall@10']:.4f})",
            "[serving](docs/serving.md)",
        ),
        (
            f"HTTP p99 at 100 requests/s, full model (target {target} ms)",
            f"{p99:.0f} ms, target " + ("met" if p99 <= target else "not met"),
            "[serving](docs/serving.md)",
        ),
    ]
    lines = ["| what | result | page |", "| --- | --- | --- |"]
    return "\n".join(lines + [f"| {what} | {result} | {page} |" for what, result, page in rows])


def new_commands(dataset: str) -> str:
    report = json.loads((RESULTS / f"new_commands_{dataset}.json").read_text())
    lines = [
        f"`{report['command']}`: held out of training (frequency ranks {report['held_out_ranks']}): "
        f"{', '.join(report['held_out_commands'])}; {report['holdout_events_removed_from_train']} training "
        f"events removed; "
        f"every position of the test sessions:",
        "",
        "| output head | NDCG@10 all targets | Recall@10 all targets | NDCG@10 held-out targets | Recall@10 "
        "held-out targets | held-out positions |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in report["models"].items():
        lines.append(
            f"| {name} | {entry['ndcg@10']:.4f} | {entry['recall@10']:.4f} | {entry['unseen']['ndcg@10']:.4f} | "
            f"{entry['unseen']['recall@10']:.4f} | {entry['unseen_positions']} |"
        )
    return "\n".join(lines)


def context_length_gpu() -> str:
    report = json.loads((RESULTS / "context_length_gpu.json").read_text())
    lines = [
        f"{report['what']} Measured {report['measured_at']} on {report['machine']['gpu']}:",
        "",
        "| max_length / batch | full NDCG@10 | Llama NDCG@10 | relative gain | full s/run | Llama s/run |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant in report["variants"].values():
        full, llama = variant["models"]["mixtral-full"], variant["models"]["llama"]
        shape = " ".join(variant["overrides"]) or "50 / 128 (config default)"
        seconds = [statistics.fmean(s["train_seconds"] for s in m["seeds"].values()) for m in (full, llama)]
        lines.append(
            f"| {shape} | {full['mean_test_ndcg@10']:.4f} ± {full['std_test_ndcg@10']:.4f} | "
            f"{llama['mean_test_ndcg@10']:.4f} ± {llama['std_test_ndcg@10']:.4f} | "
            f"{variant['relative_ndcg@10_gain']:+.1%} | "
            f"{seconds[0]:.0f} | {seconds[1]:.0f} |"
        )
    return "\n".join(lines)


def ablation_by_seed(stem: str) -> str:
    """Each ablation row minus the full model of the same seed and invocation, over `stem.json` and any
    `stem_seed<N>.json` (invocations that add ablation seeds)."""
    paths = [RESULTS / f"{stem}.json", *sorted(RESULTS.glob(f"{stem}_seed*.json"))]
    deltas: dict[str, dict[int, tuple[float, float]]] = {}  # module -> seed -> (NDCG@10, tail NDCG@10) difference
    full_by_seed: dict[int, list[float]] = {}
    for path in paths:
        models = json.loads(path.read_text())["models"]
        full_name, full = next((name, m) for name, m in models.items() if m["role"] == "full")
        for seed, run in full["seeds"].items():
            full_by_seed.setdefault(int(seed), []).append(run["ndcg@10"])
        for name, entry in models.items():
            if entry["role"] != "ablation":
                continue
            for seed, run in entry["seeds"].items():
                base = full["seeds"][seed]
                deltas.setdefault(name.removeprefix(f"{full_name} - "), {})[int(seed)] = (
                    run["ndcg@10"] - base["ndcg@10"],
                    run["buckets"]["tail"]["ndcg@10"] - base["buckets"]["tail"]["ndcg@10"],
                )
    seeds = sorted({seed for by_seed in deltas.values() for seed in by_seed})
    full_runs = "; ".join(
        f"seed {seed}: {', '.join(f'{v:.4f}' for v in values)}" for seed, values in sorted(full_by_seed.items())
    )
    lines = [
        f"NDCG@10 of the full model minus each module, less that of the full model on the same seed "
        f"(from {', '.join(p.name for p in paths)}; full model test NDCG@10 by seed and invocation: {full_runs}):",
        "",
        "| module removed | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | tail, mean |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: |",
    ]
    for module, by_seed in deltas.items():
        cells = [f"{by_seed[seed][0]:+.4f}" if seed in by_seed else "" for seed in seeds]
        lines.append(
            f"| {module} | {' | '.join(cells)} | {statistics.fmean(d for d, _ in by_seed.values()):+.4f} | "
            f"{statistics.fmean(t for _, t in by_seed.values()):+.4f} |"
        )
    return "\n".join(lines)


def serving() -> str:
    """The in-process Predictor: latency, batched throughput, served vs offline metrics."""
    lines = [
        "| run | test histories (mean events) | one request p50 / p95 | batches of 64 | served Recall@10 / NDCG@10 | "
        "offline Recall@10 / NDCG@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    results = [(name, load_result(name)) for name in ("serving_sample", "serving_vs")]
    for name, r in results:
        lines.append(
            f"| `{r['run']}` ({r['backbone']}; `{name}.json`) | {r['test_sessions']} ({r['mean_history_events']}) | "
            f"{r['single_request_ms']['p50']} / {r['single_request_ms']['p95']} ms | "
            f"{r['batched']['histories_per_second']:,} histories/s | {r['served_recall@10']:.4f} / "
            f"{r['served_ndcg@10']:.4f} | {r['offline_recall@10']:.4f} / {r['offline_ndcg@10']:.4f} |"
        )
    stages = [(name, r) for name, r in results if "stages" in r]
    if stages:
        lines += [
            "",
            "Where the time goes in-process, milliseconds per history (medians of 20 batches):",
            "",
            "| run | torch threads | batch | prepare | encode | forward pass | whole score() call |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in stages:
            for stage in r["stages"]:
                ms = stage["ms_per_history"]
                lines.append(
                    f"| `{name}.json` | {r['threads']} | {stage['batch_size']} | {ms['prepare']:.3f} | "
                    f"{ms['encode']:.3f} | {ms['forward']:.3f} | {ms['score']:.3f} |"
                )
    for name, comparison in [(name, r["lean_forward"]) for name, r in results if "lean_forward" in r]:
        rows = {(row["batch_size"], row["path"]): row for row in comparison["ms_per_history"]}
        lines += [
            "",
            f"The forward pass with the library's decoder forward and with the lean one (`{name}.json`, "
            f"{comparison['rounds']} alternating rounds), milliseconds per history, best / median round:",
            "",
            "| batch | library | lean |",
            "| ---: | ---: | ---: |",
        ]
        for size in sorted({size for size, _ in rows}):
            cells = [f"{rows[(size, p)]['best']:.3f} / {rows[(size, p)]['median']:.3f}" for p in ("library", "lean")]
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_result(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def serving_http() -> str:
    """Latency at fixed open-loop rates, capacity, sessions' memory and the bad-request battery."""
    report = json.loads((RESULTS / "serving_http.json").read_text())
    lines = [
        f"`{report['command']}` ({report['backbone']}, {report['test_sessions']} VS test histories of "
        f"{report['mean_history_events']} events on average; server torch threads {report['server_threads']}, "
        f"model workers {report.get('model_workers', 1)})",
        "",
        "| requests | rate /s | achieved /s | p50 ms | p95 ms | p99 ms | non-200 | generator CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, rows in (("single", report["single_requests"]), ("session append", report["session_appends"])):
        for row in rows:
            errors = sum(v for k, v in row["statuses"].items() if k != "200") + row["connection_failures"]
            lines.append(
                f"| {kind} | {row['rate']:g} | {row['achieved_rate']:g} | {row['p50_ms']} | {row['p95_ms']} | "
                f"{row['p99_ms']} | {errors} | {row['generator_cpu_share']:.0%} |"
            )
    overload, memory, bad = report["overload"], report["sessions_memory"], report["bad_requests"]
    lines += [
        "",
        f"- highest single-request rate sustained (p99 under 100 ms, all 200): {report['max_sustained_single_rate']}"
        f" /s; batch endpoint: {report['batch_endpoint_histories_per_second']:,} histories/s (target 1,500)",
        f"- at {overload['rate']:g} /s offered: statuses {overload['statuses']}, "
        f"{overload['connection_failures']} connection failures",
        f"- {memory['sessions_sent']:,} distinct live sessions sent, {memory['sessions_held']:,.0f} held: "
        f"RSS {memory['rss_mb_before']} -> {memory['rss_mb_after']} MB",
        f"- {bad['requests']} malformed requests: all 4xx {bad['all_4xx']}, each naming a field "
        f"{bad['all_named_a_field']}, the next good request answered {bad['next_good_all_200']}",
        f"- served Recall@10 / NDCG@10 {report['served_recall@10']:.4f} / {report['served_ndcg@10']:.4f}, offline "
        f"{report['offline_recall@10']:.4f} / {report['offline_ndcg@10']:.4f}",
    ]
    return "\n".join(lines)


def data_scale() -> str:
    """Process + preprocess at scale: in memory, streamed in partitions, on Dask."""
    report = json.loads((RESULTS / "data_scale.json").read_text())
    machine = report["machine"]
    lines = [
        f"`{report['command'].strip()}` ({machine['cpus']} CPUs, {machine['memory_gb']} GB, "
        f"polars {machine['polars']})",
        "",
        "| log | run | partitions | seconds | events/s | peak memory (process tree) | outputs equal |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for dataset in report["datasets"]:
        for run in dataset["runs"]:
            checks = run.get("equal_to_in_memory") or run.get("equal_to_streamed")
            against = "in memory" if "equal_to_in_memory" in run else "streamed"
            equal = "-" if checks is None else f"{'yes' if all(checks.values()) else 'NO'} (vs {against})"
            lines.append(
                f"| {dataset['dataset']} | {run['case']} | {run['partitions']} | {run['seconds']:.1f} | "
                f"{run['events_per_second']:,} | {run['peak_memory_gb']:.2f} GB | {equal} |"
            )
    if report.get("time_100m_over_10m_streamed"):
        lines += ["", f"100M / 10M time (default path): {report['time_100m_over_10m_streamed']}x (target at most 11x)"]
    return "\n".join(lines)


TRAIN_SCALE_PARTS = ("data_parallel_vs", "streaming_synthetic")


def train_scale() -> str:
    """One process against two data-parallel ones; the training split streamed against in memory."""
    report = json.loads((RESULTS / "train_scale.json").read_text())
    provenance = {(report[p]["command"], report[p]["measured_at"][:10]) for p in TRAIN_SCALE_PARTS if p in report}
    lines = [
        "; ".join(f"`{command}`, measured {day}" for command, day in sorted(provenance)),
        "",
        "| run | processes | seq/s | valid NDCG@10 | valid loss | test NDCG@10 | peak memory |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for part in TRAIN_SCALE_PARTS:
        for row in report.get(part, {}).get("rows", []):
            lines.append(
                f"| {row['run']} | {row['processes']} | {row['sequences_per_second']:,.0f} | {row['valid_ndcg@10']} | "
                f"{row['valid_loss']} | {row['test_ndcg@10']} | {row['peak_memory_gb']:.2f} GB |"
            )
    if "data_parallel_vs" in report:
        dp = report["data_parallel_vs"]
        gap = f"valid NDCG@10 differs by {dp['valid_ndcg@10_difference']}"
        loss = f"valid loss by {dp['valid_loss_relative_difference']:.2%}"
        lines += ["", f"Two processes against one at the same global batch: {gap}, {loss}."]
    if "fsdp_memory" in report:
        fsdp = report["fsdp_memory"]
        parameters = fsdp["rows"][0]["parameters"]
        lines += [
            "",
            f"A random Llama of {parameters / 1e6:.0f}M parameters ({', '.join(fsdp['shape'])}) on "
            f"{fsdp['processes']} gloo processes, one epoch of a small synthetic log (`{fsdp['command']}`, measured "
            f"{fsdp['measured_at'][:10]}); a rank's peak is its resident memory, shared libraries included:",
            "",
            "| run | peak per rank | peak, all processes | checkpoint on disk | seq/s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row in fsdp["rows"]:
            lines.append(
                f"| {row['run']} | {row['peak_process_memory_gb']:.2f} GB | {row['peak_memory_gb']:.2f} GB | "
                f"{row['checkpoint_gb']:.2f} GB | {row['sequences_per_second']:,.1f} |"
            )
    lines += ["", "Not measured: " + "; ".join(report["not_measured"]) + "."]
    return "\n".join(lines)


def quickstart_sample() -> str:
    """Is the quickstart's first impression the sample's or the model's? Context structure and three seeds."""
    report = load_result("quickstart_sample")
    structure = report["context_structure"]
    lines = [
        f"`{report['command']}`, measured {report['measured_at'][:10]}. Test NDCG@10 of the next command from "
        "counts of the commands before it (one back: a first-order Markov chain; two back, backing off to one):",
        "",
        "| log | test sessions | one command back | two commands back | gain of the second |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in structure.items():
        lines.append(
            f"| {name} | {row['test_sessions']:,} | {row['one command back']:.4f} | {row['two commands back']:.4f} | "
            f"{row['relative_gain_of_two']:+.1%} |"
        )
    lines += ["", "The quickstart's two models on the sample (mean ± std over seeds):", ""]
    lines += ["| model | seeds | test NDCG@10 | per seed | train s |", "| --- | ---: | ---: | --- | ---: |"]
    for label, entry in report["models"].items():
        seeds = ", ".join(f"{s['ndcg@10']:.4f}" for s in entry["seeds"])
        lines.append(
            f"| {label} | {len(entry['seeds'])} | {entry['mean_ndcg@10']:.4f} ± {entry['std_ndcg@10']:.4f} | "
            f"{seeds} | {entry['mean_train_seconds']:.1f} |"
        )
    return "\n".join(lines)


def preprocess() -> str:
    """Process + preprocess of the VS logs in memory."""
    r = json.loads((RESULTS / "preprocess.json").read_text())
    return (
        f"{r['events']:,} events -> {r['sessions']:,} sessions in **{r['seconds']:.2f} s** (best of "
        f"{len(r['seconds_all_runs'])}; {r['engine']}, {r['machine']['cpus']} CPUs, measured {r['measured_at'][:10]})"
    )


def data_scale_headline() -> str:
    """One line for the README: the largest log streamed."""
    report = json.loads((RESULTS / "data_scale.json").read_text())
    largest = max((d for d in report["datasets"] if d["dataset"].startswith("synthetic")), key=lambda d: d["events"])
    run = next(r for r in largest["runs"] if r["case"].startswith("streamed"))
    return (
        f"Logs beyond memory: {largest['events']:,} synthetic events processed and preprocessed in "
        f"{run['partitions']} partitions in {run['seconds']:.0f} s ({run['events_per_second']:,} events/s; target "
        f"1M/s not met) with peak memory {run['peak_memory_gb']:.2f} GB (target 6 GB); "
        f"[data](docs/data.md#logs-larger-than-memory-and-on-a-dask-cluster)."
    )


def nvtabular_peer() -> str:
    """cmdrec's feature workflow beside NVTabular's on the VS sessions."""
    r = json.loads((RESULTS / "nvtabular_peer.json").read_text())
    return "\n".join(
        [
            "| workflow (Categorify + Normalize + Groupby, all VS sessions) | seconds |",
            "| --- | ---: |",
            f"| cmdrec, polars {r['versions']['polars']} (time features included) | {r['cmdrec_seconds']:.2f} |",
            f"| NVTabular {r['versions']['nvtabular']} CPU: fit + transform | {r['nvtabular_workflow_seconds']:.2f} |",
            f"| NVTabular: time features in pandas before the workflow | {r['nvtabular_pandas_feature_seconds']:.2f} |",
            "",
            f"{r['events']:,} events; sessions out: cmdrec {r['sessions']['cmdrec']:,}, NVTabular "
            f"{r['sessions']['nvtabular']:,}; `{r['command']}`",
        ]
    )


def peer_t4rec() -> str:
    """cmdrec against Transformers4Rec on the same windows and model."""
    report = json.loads((RESULTS / "peer_t4rec.json").read_text())
    epochs = next(iter(report["models"].values()))["epochs"]
    lines = [
        f"`{report['command']}`, measured {report['measured_at'][:10]}: {report['model']}; {report['data']}; "
        f"{report['train_windows']:,} training windows, {report['test_sessions']:,} test sessions, {epochs} epochs, "
        f"one after the other on {report['machine']['cpus']} CPU cores.",
        "",
        "| | NDCG@10 | Recall@10 | train seq/s | train s | eval s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in report["models"].items():
        lines.append(
            f"| {name} | {entry['ndcg@10']:.4f} | {entry['recall@10']:.4f} | {entry['sequences_per_second']:.0f} | "
            f"{entry['train_seconds']:.0f} | {entry['eval_seconds']:.2f} |"
        )
    lines += ["", f"Training throughput, cmdrec over Transformers4Rec: {report['throughput_ratio']:.2f}x."]
    best = report.get("best_at_equal_ndcg")
    if best is not None:
        lines[-1] += (
            f" The fastest cmdrec configuration at least as accurate ({best['row']}): {best['throughput_ratio']:.2f}x."
        )
    return "\n".join(lines)


def llm_backbones() -> str:
    """LoRA, QLoRA and full fine-tuning of a pretrained decoder: memory, speed, NDCG@10."""
    report = json.loads((RESULTS / "llm_backbones.json").read_text())
    lines = [
        f"`{report['command']}`; {report['data']}:",
        "",
        "| device / shape / configuration | bit | peak memory GB | seq/s | NDCG@10 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, run in report["runs"].items():
        kind = "process peak RSS" if run["device"] == "cpu" else "GPU, max allocated"
        lines.append(
            f"| {name} | {run['bit']} | {run['peak_memory_gb']:.3f} ({kind}) | {run['sequences_per_second']:.1f} | "
            f"{run['ndcg@10']:.4f} |"
        )
    return "\n".join(lines)


STAGE_NAMES = {
    "base": "every stage off (the full-model benchmark's data)",
    "undo": "undo/redo reconstruction (VS preset)",
    "redundant": "redundant-command removal (the reviewed mined pairs)",
    "workflows": "workflow tokens (200 merges, min count 20)",
    "balanced": "coverage-balanced split",
    "chunking": "random-length chunks (10-100)",
}


def pipeline_stages() -> str:
    """Each of the paper's data stages on alone: test NDCG@10 of each model, and the change from base."""
    report = json.loads((RESULTS / "pipeline_stages_vs.json").read_text())
    runs = {(r["step"], r["model"]): r for r in report["runs"] if r["seed"] == 1}
    models = [m for m in ("llama", "full") if any(key[1] == m for key in runs)]
    epochs = sorted({r["epochs"] for r in report["runs"]})
    lines = [
        f"`python benchmarks/pipeline_stages_vs.py` (seed 1; "
        f"{', '.join(map(str, epochs))} epochs; VS logs, random session split), measured "
        f"{report['measured_at'][:10]}; the change is against `base` with the same model:",
        "",
        "| stage | "
        + " | ".join(f"{m} NDCG@10 | change" for m in models)
        + " | events after processing | test sessions |",
        "| --- | " + " | ".join("---: | ---:" for _ in models) + " | ---: | ---: |",
    ]
    for step, label in STAGE_NAMES.items():
        cells, any_run = [], None
        for model in models:
            run, base = runs.get((step, model)), runs.get(("base", model))
            if run is None:
                cells.append("not run | ")
                continue
            any_run = run
            value = run["test"]["ndcg@10"]
            change = "" if step == "base" or base is None else f"{value - base['test']['ndcg@10']:+.4f}"
            cells.append(f"{value:.4f} | {change}")
        if any_run is not None:
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {any_run['events_after_processing']:,} | "
                         f"{any_run['test_sessions']:,} |")  # fmt: skip
    shared = [(key, r["shared_targets"]) for key, r in runs.items() if "shared_targets" in r]
    if shared:
        lines += [
            "",
            "The stages that change the events, on the test targets both versions share (the same event, each "
            "after its own history):",
            "",
            "| stage | model | shared targets (evaluated: base / stage) | base NDCG@10 | stage NDCG@10 | change |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for (step, model), row in shared:
            lines.append(
                f"| {STAGE_NAMES[step]} | {model} | {row['sessions']:,} ({row['base']['positions_evaluated']:,} / "
                f"{row[step]['positions_evaluated']:,}) | {row['base']['ndcg@10']:.4f} | "
                f"{row[step]['ndcg@10']:.4f} | {row['ndcg@10_change']:+.4f} |"
            )
    seeded = _stage_seeds(report)
    if seeded:
        lines += [
            "",
            "Stages run with more seeds (mean ± standard deviation over seeds; the change is each seed's change "
            "against `base` of the same seed, averaged; shared targets as above):",
            "",
            "| stage | model | seeds | base NDCG@10 | stage NDCG@10 | change | change per seed | on shared targets |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        for (step, model), pairs in seeded.items():
            base = [b["test"]["ndcg@10"] for b, _ in pairs]
            stage = [r["test"]["ndcg@10"] for _, r in pairs]
            changes = _seed_changes(pairs)
            shared = [r["shared_targets"]["ndcg@10_change"] for _, r in pairs if "shared_targets" in r]
            lines.append(
                f"| {STAGE_NAMES[step]} | {model} | {len(pairs)} | {_mean_std(base)} | {_mean_std(stage)} | "
                f"{statistics.fmean(changes):+.4f} | {', '.join(f'{c:+.4f}' for c in changes)} | "
                f"{f'{statistics.fmean(shared):+.4f}' if len(shared) == len(pairs) else '-'} |"
            )
    return "\n".join(lines)


def _stage_seeds(report: dict) -> dict[tuple[str, str], list[tuple[dict, dict]]]:
    """(stage, model) run with more than one seed -> (base run, stage run) per seed both have."""
    runs = {(r["step"], r["model"], r["seed"]): r for r in report["runs"]}
    seeded = {}
    for step, model, seed in sorted(runs):
        if step != "base" and (base := runs.get(("base", model, seed))) is not None:
            seeded.setdefault((step, model), []).append((base, runs[(step, model, seed)]))
    return {key: pairs for key, pairs in seeded.items() if len(pairs) > 1}


def _seed_changes(pairs: list[tuple[dict, dict]]) -> list[float]:
    return [r["test"]["ndcg@10"] - b["test"]["ndcg@10"] for b, r in pairs]


def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def pipeline_stages_headline() -> str:
    """The README's short version: the change each stage makes to test NDCG@10, per model."""
    report = json.loads((RESULTS / "pipeline_stages_vs.json").read_text())
    runs = {(r["step"], r["model"]): r["test"]["ndcg@10"] for r in report["runs"] if r["seed"] == 1}
    seeded = _stage_seeds(report)
    models = [m for m in ("llama", "full") if ("base", m) in runs]
    lines = ["| data stage (seed 1; mean of seeds where more ran) | "
             + " | ".join(f"{m} NDCG@10 change" for m in models) + " |",
             "| --- | " + " | ".join("---:" for _ in models) + " |"]  # fmt: skip

    def cell(step: str, model: str) -> str:
        if (step, model) in seeded:
            changes = _seed_changes(seeded[(step, model)])
            return f"{statistics.fmean(changes):+.4f} ({len(changes)} seeds)"
        if (step, model) in runs:
            return f"{runs[(step, model)] - runs[('base', model)]:+.4f}"
        return "not run"

    for step, label in STAGE_NAMES.items():
        if step == "base" or not any((step, m) in runs for m in models):
            continue
        lines.append(f"| {label} | " + " | ".join(cell(step, m) for m in models) + " |")
    return "\n".join(lines)


TABLES = {
    "headline": headline,
    "preprocess": preprocess,
    "quickstart_sample": quickstart_sample,
    "train_scale": train_scale,
    "data_scale": data_scale,
    "data_scale_headline": data_scale_headline,
    "nvtabular_peer": nvtabular_peer,
    "serving": serving,
    "serving_http": serving_http,
    "baselines_vs": baselines_vs,
    "peer_t4rec": peer_t4rec,
    "llm_backbones": llm_backbones,
    "pipeline_stages": pipeline_stages,
    "pipeline_stages_headline": pipeline_stages_headline,
    "full_vs": lambda: full_vs("full_vs"),
    "full_vs_10ep": lambda: full_vs("full_vs_10ep"),
    "full_vs_copy": lambda: full_vs("full_vs_copy"),
    "full_vs_gpu": lambda: full_vs("full_vs_gpu"),
    "full_vs_developer": lambda: full_vs("full_vs_developer"),
    "ablation_developer": lambda: ablation_by_seed("full_vs_developer"),
    "context_length_gpu": context_length_gpu,
    "beauty": beauty,
    "new_commands_sample": lambda: new_commands("sample"),
    "new_commands_vs": lambda: new_commands("vs"),
}

ROOT = RESULTS.parents[1]
BLOCK = re.compile(r"(<!-- table: (?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def regenerate(text: str) -> str:
    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r} in a generated block; known: {sorted(TABLES)}")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


def write_or_check(check: bool) -> int:
    stale = []
    for path in documents():
        text = path.read_text()
        fresh = regenerate(text)
        if fresh != text:
            stale.append(path.relative_to(ROOT))
            if not check:
                path.write_text(fresh)
    if check and stale:
        print(f"stale tables in {', '.join(map(str, stale))}: run python benchmarks/tables.py --write")
        return 1
    if not check:
        print(f"regenerated {', '.join(map(str, stale)) or 'nothing (all current)'}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] in (["--write"], ["--check"]):
        sys.exit(write_or_check(sys.argv[1] == "--check"))
    unknown = [name for name in sys.argv[1:] if name not in TABLES]
    if unknown:
        sys.exit(f"unknown table(s) {unknown}; known: {sorted(TABLES)}")
    for name in sys.argv[1:] or TABLES:
        try:
            print(TABLES[name]() + "\n")
        except FileNotFoundError as missing:
            print(f"{name}: not measured ({missing.filename} does not exist)\n")
