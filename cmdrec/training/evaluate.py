"""Evaluation: full-ranking metrics of a model (neural or baseline) on one split."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import torch

from cmdrec.artifacts.bundle import load_model_dir
from cmdrec.config import EvalConfig, ModelConfig, RunConfig
from cmdrec.data.dataset import PreparedDataset
from cmdrec.data.masking import mask_batch
from cmdrec.data.sequences import SequenceData, iterate_batches, load_schema
from cmdrec.errors import InputError
from cmdrec.features.embeddings import mask_ids as build_mask_ids
from cmdrec.losses import cross_entropy
from cmdrec.models.build import data_columns
from cmdrec.models.tokens import score_next_commands
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.training.metrics import BUCKETS, RankingMetrics, frequency_buckets, seen_items, target_ranks

CPU = torch.device("cpu")


@torch.no_grad()
def evaluate(
    model,
    data: SequenceData,
    model_config: ModelConfig,
    eval_config: EvalConfig,
    mask_ids: dict[str, int],
    device: torch.device = CPU,
    buckets: torch.Tensor | None = None,
) -> dict:
    """NDCG / Recall / MRR at each k, the mean loss, and how many positions were evaluated or skipped.
    Auxiliary tasks get the same metrics, prefixed with their column name (`category/ndcg@3`); with
    `buckets` (item id -> index into metrics.BUCKETS), so do the targets of each frequency bucket."""
    model.eval()
    item = data.item_column
    metrics = RankingMetrics(eval_config.ks)
    bucket_metrics = {name: RankingMetrics(eval_config.ks) for name in BUCKETS} if buckets is not None else {}
    task_metrics = {task: RankingMetrics(eval_config.ks) for task in model_config.aux_tasks}
    first = None if data.first_commands is None else torch.from_numpy(data.first_commands)
    if first is not None and (eval_config.positions != "last" or eval_config.exclude_seen):
        raise InputError(
            "data with workflow tokens is evaluated on the next command after each history: positions=last, "
            "exclude_seen=false"
        )
    started, loss_sum, candidates = time.perf_counter(), 0.0, 0
    for _, batch in iterate_batches(data, eval_config.batch_size):
        masked = mask_batch(
            batch,
            model_config.masking,
            [item, *model_config.aux_tasks],
            training=False,
            positions=eval_config.positions,
            mask_ids=mask_ids,
        )
        lengths = batch.padding_mask.sum(1)
        candidates += int(
            lengths.numel() if eval_config.positions == "last" or model_config.masking == "mlm" else (lengths - 1).sum()
        )
        masked = masked.to(device)
        logits, output, scored = score_next_commands(model, masked, first, data.token_extensions)
        for task, accumulator in task_metrics.items():
            task_targets = masked.targets[task][masked.loss_mask]
            task_logits = output.logits[task] if scored is None else output.logits[task][scored]
            known = task_targets >= FIRST_VALUE_ID
            accumulator.add(target_ranks(task_logits[known], task_targets[known]).cpu())
        targets = masked.targets[item][masked.loss_mask]
        exclude = None
        if eval_config.exclude_seen:
            exclude = seen_items(*masked.predicted_histories(include_earlier=True), logits.shape[1])
        ranks = target_ranks(logits, targets, exclude).cpu()
        metrics.add(ranks)
        for index, name in enumerate(bucket_metrics):
            bucket_metrics[name].add(ranks[buckets[targets.cpu()] == index])
        loss_sum += cross_entropy(logits, targets).item() * len(targets)
    result = metrics.result()
    bucket_metrics = {
        name: accumulator for name, accumulator in bucket_metrics.items() if accumulator.count
    }  # no empty buckets
    for prefix, accumulator in {**task_metrics, **bucket_metrics}.items():
        result |= {f"{prefix}/{name}": value for name, value in accumulator.result().items()}
    result |= {f"{name}/positions": accumulator.count for name, accumulator in bucket_metrics.items()}
    result["loss"] = loss_sum / max(metrics.count, 1)
    result["positions_evaluated"] = metrics.count
    result["positions_skipped_oov_target"] = candidates - metrics.count
    result["eval_seconds"] = round(time.perf_counter() - started, 3)
    return result


def load_buckets(data_dir: str | Path) -> torch.Tensor | None:
    """Head / torso / tail bucket of each command id, from the training counts in items.parquet."""
    path = PreparedDataset(data_dir).items_path
    if not path.is_file():
        return None
    return frequency_buckets(torch.tensor(pl.read_parquet(path, columns=["train_count"])["train_count"].to_list()))


def evaluate_model(model, config: RunConfig, eval_config: EvalConfig | None = None, split: str = "test") -> dict:
    """Metrics of a loaded model on a split, with its run's or the given evaluation settings."""
    schema = load_schema(config.data_dir)
    columns = data_columns(config.model, schema)
    eval_config = eval_config or config.eval
    data = SequenceData.load(
        config.data_dir, split, columns, config.model.window_length, "eval", earlier_items=eval_config.exclude_seen
    )
    return evaluate(
        model,
        data,
        config.model,
        eval_config,
        build_mask_ids(schema, columns),
        buckets=load_buckets(config.data_dir),
    )


def evaluate_run(run_dir: str | Path, eval_config: EvalConfig | None = None, split: str = "test") -> dict:
    """Metrics of a trained run's best model (or of a bundle) on a split."""
    return evaluate_model(*load_model_dir(run_dir), eval_config, split)
