"""Where a model goes wrong (`cmdrec evaluate RUN --analysis`): the confusion matrix of the next
command's category, the commands it misses most, how accuracy grows with the history it has seen,
and how well its command ranking, summed per category, predicts the categories of the next K
commands. Every prediction of the split is looked at (positions "all"; clm models)."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import torch

from cmdrec.config import RunConfig
from cmdrec.data.dataset import PreparedDataset
from cmdrec.data.masking import mask_batch
from cmdrec.data.sequences import SequenceData, iterate_batches, load_schema
from cmdrec.errors import InputError
from cmdrec.features.embeddings import mask_ids as build_mask_ids
from cmdrec.io import write_json_atomic
from cmdrec.models.build import data_columns
from cmdrec.schema import FIRST_VALUE_ID, OOV_ID
from cmdrec.training.evaluate import load_buckets
from cmdrec.training.metrics import BUCKETS, target_ranks

K = 10
HISTORY_BINS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 10**9))


@torch.no_grad()
def analyse(model, config: RunConfig, split: str, out_dir: str | Path, next_k: int = 3) -> dict:
    if config.model.masking != "clm":
        raise InputError("--analysis looks at every position of a session: it needs a clm (causal) model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema = load_schema(config.data_dir)
    columns = data_columns(config.model, schema)
    data = SequenceData.load(config.data_dir, split, columns, config.model.window_length, "eval")
    if "workflow_tokens" in schema.item_id.properties:
        raise InputError("--analysis reads every position of the test windows; data with workflow tokens has one")
    items = PreparedDataset(config.data_dir).items()
    names = items["name"].to_list()
    has_categories = "category" in items.columns
    item_category = torch.tensor(items["category"].to_list() if has_categories else [OOV_ID] * items.height)
    category_names = _category_names(items) if has_categories else {}
    buckets = load_buckets(config.data_dir)
    mask_ids = build_mask_ids(schema, columns)
    model.eval()

    ranks, targets, histories, top1 = [], [], [], []
    hits, wanted, offered = 0, 0, 0
    for _, batch in iterate_batches(data, config.eval.batch_size):
        masked = mask_batch(batch, "clm", [data.item_column], training=False, positions="all", mask_ids=mask_ids)
        logits = model(masked).logits[data.item_column].float()
        target = masked.targets[data.item_column][masked.loss_mask]
        rows, cols = masked.loss_mask.nonzero(as_tuple=True)
        ranks.append(target_ranks(logits, target))
        targets.append(target)
        histories.append(cols + 1)
        top1.append(logits.argmax(1))
        if has_categories:
            # categories of the next K commands (inside the window) against the K categories whose
            # commands hold the most probability
            per_category = torch.zeros(len(logits), int(item_category.max()) + 1).index_add_(
                1, item_category, torch.softmax(logits, 1)
            )
            per_category[:, :FIRST_VALUE_ID] = 0  # padding and unknown are no answer
            ranked = per_category.topk(next_k, dim=1).indices
            future = masked.targets[data.item_column]
            for n, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
                ahead = future[row, col : col + next_k]
                valid = masked.loss_mask[row, col : col + next_k]
                if len(ahead) < next_k or not bool(valid.all()):
                    continue
                actual = {int(c) for c in item_category[ahead].tolist()} - {0, OOV_ID}
                if not actual:
                    continue
                found = len(actual & set(ranked[n].tolist()))
                hits, wanted, offered = hits + found, wanted + len(actual), offered + next_k
    ranks, targets, histories, top1 = (torch.cat(x) for x in (ranks, targets, histories, top1))

    summary = {"split": split, "predictions": len(ranks)}
    summary["by_history_length"] = _by_history(ranks, histories, out)
    summary["most_missed"] = _most_missed(ranks, targets, names, buckets, out)
    if has_categories:
        summary["category_confusion"] = _confusion(item_category[targets], item_category[top1], category_names, out)
        summary[f"next_{next_k}_categories"] = {
            "precision": round(hits / max(offered, 1), 4),
            "recall": round(hits / max(wanted, 1), 4),
            "positions": offered // next_k,
            "how": f"categories ranked by the summed probability of their commands; the truth is the set of "
            f"categories of the next {next_k} commands",
        }
    write_json_atomic(out / "analysis.json", summary)
    return summary


def _category_names(items: pl.DataFrame) -> dict[int, str]:
    if "category_name" not in items.columns:
        return {}
    pairs = items.select("category", "category_name").unique().drop_nulls().iter_rows()
    return {int(code): name for code, name in pairs}


def _metrics(ranks: torch.Tensor) -> dict:
    if not len(ranks):
        return {"positions": 0}
    hit = ranks < K
    gain = torch.where(hit, 1.0 / torch.log2(ranks.double() + 2), torch.zeros_like(ranks, dtype=torch.double))
    return {
        "positions": len(ranks),
        f"recall@{K}": round(hit.double().mean().item(), 4),
        f"ndcg@{K}": round(gain.mean().item(), 4),
    }


def _by_history(ranks, histories, out: Path) -> list[dict]:
    rows = []
    for low, high in HISTORY_BINS:
        chosen = (histories >= low) & (histories <= high)
        if chosen.any():
            label = str(low) if low == high else f"{low}-{high}" if high < 10**9 else f"{low}+"
            rows.append({"history": label, **_metrics(ranks[chosen])})
    _write_csv(out / "by_history_length.csv", rows)
    _plot_lines(rows, out / "by_history_length.png")
    return rows


def _most_missed(ranks, targets, names, buckets, out: Path, top: int = 25) -> list[dict]:
    missed = ranks >= K
    counts = torch.bincount(targets, minlength=len(names))
    misses = torch.bincount(targets[missed], minlength=len(names))
    order = torch.argsort(misses, descending=True, stable=True)[:top]
    rows = [
        {
            "command": names[i],
            "misses": int(misses[i]),
            "occurrences": int(counts[i]),
            "miss_rate": round(int(misses[i]) / int(counts[i]), 4),
            "bucket": BUCKETS[int(buckets[i])] if buckets is not None else None,
        }
        for i in order.tolist()
        if misses[i] > 0
    ]
    _write_csv(out / "most_missed.csv", rows)
    if buckets is not None:  # misses by frequency bucket, the tail's share beside the head's
        by_bucket = [
            {
                "bucket": name,
                "misses": int(missed[buckets[targets] == b].sum()),
                **_metrics(ranks[buckets[targets] == b]),
            }
            for b, name in enumerate(BUCKETS)
        ]
        _write_csv(out / "misses_by_bucket.csv", by_bucket)
    return rows[:10]


def _confusion(actual, predicted, category_names: dict[int, str], out: Path) -> dict:
    codes = sorted(set(actual.tolist()) | set(predicted.tolist()))
    index = {code: n for n, code in enumerate(codes)}
    matrix = torch.zeros(len(codes), len(codes), dtype=torch.long)
    for a, p in zip(actual.tolist(), predicted.tolist(), strict=True):
        matrix[index[a], index[p]] += 1
    labels = [category_names.get(code, "<unknown>" if code == OOV_ID else str(code)) for code in codes]
    with (out / "category_confusion.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual \\ predicted", *labels])
        for label, row in zip(labels, matrix.tolist(), strict=True):
            writer.writerow([label, *row])
    _plot_matrix(matrix, labels, out / "category_confusion.png")
    return {"accuracy": round(matrix.diag().sum().item() / max(matrix.sum().item(), 1), 4), "categories": labels}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _plot_lines(rows: list[dict], path: Path) -> None:
    plt = _pyplot()
    if plt is None or not rows:
        return
    figure, axes = plt.subplots(figsize=(7, 4))
    labels = [r["history"] for r in rows]
    for key in (f"recall@{K}", f"ndcg@{K}"):
        axes.plot(labels, [r[key] for r in rows], marker="o", label=key)
    axes.set_xlabel("commands seen before the prediction (in the window)")
    axes.set_ylabel("score")
    axes.set_title("Accuracy by history length")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_matrix(matrix: torch.Tensor, labels: list[str], path: Path) -> None:
    plt = _pyplot()
    if plt is None:
        return
    shares = matrix.double() / matrix.sum(1, keepdim=True).clamp(min=1)  # each actual category's row sums to 1
    size = max(5.0, 0.45 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_xlabel("category of the top suggestion")
    axes.set_ylabel("category of the next command")
    axes.set_title("Next-command category: share of each row")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
