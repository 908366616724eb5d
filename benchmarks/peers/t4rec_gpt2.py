"""Transformers4Rec 23.12 side of benchmarks/peer_t4rec.py. Runs inside the T4Rec virtual
environment (benchmarks/peers/t4rec-requirements.txt), never in cmdrec's.

    .venv-t4rec/bin/python benchmarks/peers/t4rec_gpt2.py --train T.parquet --test E.parquet --items V --epochs N --out R.json
"""

import argparse
import json
import time

import numpy as np
import transformers4rec.torch as tr
from merlin.schema import ColumnSchema, Schema, Tags
from transformers4rec.config.trainer import T4RecTrainingArguments
from transformers4rec.torch.ranking_metric import NDCGAt, RecallAt


def main():
    parser = argparse.ArgumentParser()
    for name in ("--train", "--test", "--out", "--workdir"):
        parser.add_argument(name, required=True)
    parser.add_argument("--items", type=int, required=True, help="vocabulary size including the reserved ids")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()

    schema = Schema([ColumnSchema(
        "item_id-list", dtype=np.int64, is_list=True, is_ragged=True,
        tags=[Tags.ITEM_ID, Tags.CATEGORICAL, Tags.LIST, Tags.ITEM, Tags.ID],
        properties={"domain": {"min": 0, "max": args.items - 1, "name": "item_id"}, "value_count": {"min": 0, "max": args.max_length}},
    )])
    inputs = tr.TabularSequenceFeatures.from_schema(schema, max_sequence_length=args.max_length, d_output=args.d_model, masking="clm")
    transformer = tr.GPT2Config.build(d_model=args.d_model, n_head=args.heads, n_layer=args.layers, total_seq_length=args.max_length)
    task = tr.NextItemPredictionTask(weight_tying=True, metrics=[NDCGAt(top_ks=[10], labels_onehot=True), RecallAt(top_ks=[10], labels_onehot=True)])
    model = transformer.to_torch_model(inputs, task)
    training = T4RecTrainingArguments(
        output_dir=args.workdir, max_sequence_length=args.max_length, data_loader_engine="merlin", num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=256, learning_rate=args.learning_rate,
        report_to=[], no_cuda=True, logging_steps=10_000, save_strategy="no", dataloader_drop_last=False, predict_top_k=10,
        disable_tqdm=True,
    )
    trainer = tr.Trainer(model=model, args=training, schema=schema, compute_metrics=True)
    trainer.train_dataset_or_path = args.train
    started = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - started
    trainer.eval_dataset_or_path = args.test
    started = time.perf_counter()
    metrics = trainer.evaluate(metric_key_prefix="eval")
    eval_seconds = time.perf_counter() - started
    windows = train_output.metrics["train_samples_per_second"] * train_output.metrics["train_runtime"] / args.epochs
    with open(args.out, "w") as handle:
        json.dump({
            "ndcg@10": float(metrics["eval_/next-item/ndcg_at_10"]),
            "recall@10": float(metrics["eval_/next-item/recall_at_10"]),
            "train_seconds": round(train_seconds, 2),
            "sequences_per_second": round(windows * args.epochs / train_seconds, 1),
            "eval_seconds": round(eval_seconds, 2),
            "epochs": args.epochs,
            "raw_metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        }, handle, indent=2)


if __name__ == "__main__":
    main()
