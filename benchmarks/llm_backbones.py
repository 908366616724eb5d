"""Pretrained-decoder backbones: peak memory and training throughput of QLoRA (4-bit base + LoRA),
LoRA on a full-precision (CPU) or bf16 (GPU) base, and full fine-tuning, on a randomly initialised
Llama of a given shape (no download), plus the metrics after a one-epoch run on the bundled sample.
Writes/merges benchmarks/results/llm_backbones.json.

    python benchmarks/llm_backbones.py                                   # CPU, tiny Llama
    python benchmarks/llm_backbones.py --device cuda --shape llama3.2-1b # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=32,
    ),
    "llama3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        rope_theta=500000.0,
        tie_word_embeddings=True,
    ),
}
CONFIGS = {  # name -> (bit on cpu, bit on cuda, adapter)
    "qlora-4bit": (4, 4, "lora"),
    "lora": (32, 16, "lora"),
    "full-finetune": (32, 16, "none"),
}


def one(args) -> dict:
    """Train one configuration in this process and report it."""
    from cmdrec.config import load_run_config
    from cmdrec.training.loop import train

    bit_cpu, bit_gpu, adapter = CONFIGS[args.config]
    bit = bit_gpu if args.device == "cuda" else bit_cpu
    overrides = [
        f"data_dir={args.data}",
        f"runs_dir={args.runs}",
        f"name={args.shape}-{args.config}-{args.device}",
        "model.backbone=pretrained",
        f"model.pretrained.path={args.model}",
        f"model.pretrained.bit={bit}",
        f"model.pretrained.adapter.method={adapter}",
        "model.pretrained.adapter.r=16",
        "model.pretrained.adapter.alpha=32",
        "model.d_model=64",
        "model.max_length=49",
        "model.pretrained.attn_implementation=sdpa",
        f"model.pretrained.gradient_checkpointing={'true' if args.device == 'cuda' else 'false'}",
        "training.epochs=1",
        f"training.batch_size={args.batch_size}",
        "training.learning_rate=0.0005",
        "training.warmup_steps=10",
        f"training.device={args.device}",
        "training.early_stopping_patience=null",
    ]
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train(load_run_config(None, overrides), show_progress=False)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        )  # KiB -> GiB: the process's peak resident memory
    return {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "shape": args.shape,
        "configuration": args.config,
        "bit": bit,
        "adapter": adapter,
        "peak_memory_gb": round(peak, 3),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if args.device == "cuda" else "process peak RSS",
        "sequences_per_second": result["sequences_per_second"],
        "train_seconds": result["train_seconds"],
        "parameters": result["parameters"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        **{k: result["test"][k] for k in ("ndcg@10", "recall@10", "mrr@10")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shape", default="tiny", choices=list(SHAPES))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/llm_backbones.json"))
    parser.add_argument("--config", help=argparse.SUPPRESS)  # internal: run one configuration
    for name in ("--data", "--runs", "--model", "--result"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        Path(args.result).write_text(json.dumps(one(args)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU here", file=sys.stderr)
        return 1
    from transformers import LlamaConfig, LlamaModel

    from cmdrec.data.pipeline import preprocess, process_logs
    from cmdrec.data.synthetic import sample_config, write_sample

    out = Path(args.out)
    results = json.loads(out.read_text())["runs"] if out.is_file() else {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_sample(scratch / "raw")
        data_config = sample_config(str(scratch / "raw"), str(scratch / "out"))
        process_logs(data_config)
        preprocess(data_config)
        torch.manual_seed(0)
        model_dir = scratch / "llama"
        decoder = LlamaModel(LlamaConfig(max_position_embeddings=128, **SHAPES[args.shape]))
        decoder.to(torch.bfloat16 if args.shape != "tiny" else torch.float32).save_pretrained(model_dir)
        del decoder
        for name in args.configs:
            result_file = scratch / f"{name}.json"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--device",
                    args.device,
                    "--shape",
                    args.shape,
                    "--config",
                    name,
                    "--batch-size",
                    str(args.batch_size),
                    "--data",
                    data_config.preprocessed_dir,
                    "--runs",
                    str(scratch / "runs"),
                    "--model",
                    str(model_dir),
                    "--result",
                    str(result_file),
                ],
                check=True,
            )
            row = json.loads(result_file.read_text())
            results[f"{args.device}/{args.shape}/{name}"] = row
            print(
                f"{args.device} {args.shape} {name}: peak {row['peak_memory_gb']} GB, "
                f"{row['sequences_per_second']} seq/s, NDCG@10 {row['ndcg@10']:.4f}",
                flush=True,
            )
    out.write_text(
        json.dumps(
            {
                "command": "python benchmarks/llm_backbones.py [--device cuda --shape llama3.2-1b]",
                "data": "bundled sample (simulated BIM/CAD log), one epoch",
                "runs": results,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
