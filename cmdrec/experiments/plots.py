"""`cmdrec plot ...`: pictures a person opens to see the data and what a model learned.

- `data PROCESSED_DIR`: session lengths and command frequencies of a processed log, before and after
  cleaning (from the processing report);
- `embeddings RUN_OR_BUNDLE`: a 2-D map (PCA) of the learned command embeddings, and of the text
  embeddings when the data has them, coloured by category.

One colour per category (and per before/after) in every picture, in a fixed order.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cmdrec.artifacts.bundle import load_model_dir
from cmdrec.data.dataset import PROCESSING_REPORT, PreparedDataset
from cmdrec.errors import InputError

BEFORE_AFTER = {"before": "#7f7f7f", "after": "#1f77b4"}
MAX_CATEGORIES = 12  # the rest are drawn grey as "other"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise InputError("cmdrec plot needs matplotlib: pip install 'cmdrec[report]'") from error
    return plt


def plot_data(processed_dir: str | Path, out_dir: str | Path) -> list[Path]:
    report_path = Path(processed_dir) / PROCESSING_REPORT
    if not report_path.is_file():
        raise InputError(f"no {PROCESSING_REPORT} in {processed_dir}; run cmdrec process first")
    report = json.loads(report_path.read_text())
    if "length_histogram" not in report["before"]:
        raise InputError(f"{report_path} predates the data plots; run cmdrec process again")
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    figure, axes = plt.subplots(figsize=(8, 4))
    labels = list(dict.fromkeys([*report["before"]["length_histogram"], *report["after"]["length_histogram"]]))
    width = 0.4
    for shift, stage in ((-width / 2, "before"), (width / 2, "after")):
        histogram = report[stage]["length_histogram"]
        axes.bar(
            [i + shift for i in range(len(labels))],
            [histogram.get(label, 0) for label in labels],
            width,
            color=BEFORE_AFTER[stage],
            label=f"{stage} cleaning ({report[stage]['sessions']:,} sessions)",
        )
    axes.set_xticks(range(len(labels)), labels, rotation=45)
    axes.set_xlabel("events in the session")
    axes.set_ylabel("sessions")
    axes.set_title(f"Session lengths: {report['dataset']}")
    axes.legend()
    written.append(_save(plt, figure, out / "session_lengths.png"))

    figure, axes = plt.subplots(figsize=(8, 4))
    for stage in ("before", "after"):
        counts = report[stage]["command_counts"]
        axes.loglog(range(1, len(counts) + 1), counts, color=BEFORE_AFTER[stage], label=f"{stage} cleaning")
    axes.set_xlabel("command rank by frequency")
    axes.set_ylabel("events")
    axes.set_title(f"Command frequencies (top 200): {report['dataset']}")
    axes.legend()
    written.append(_save(plt, figure, out / "command_frequencies.png"))
    return written


def plot_embeddings(run: str | Path, out_dir: str | Path) -> list[Path]:
    model, config = load_model_dir(run)
    if not hasattr(model, "inputs"):
        raise InputError(f"{run} is a count baseline: it has no command embeddings to draw")
    dataset = PreparedDataset(config.data_dir)  # a bundle's config points at the bundle
    items = dataset.items()
    categories = items["category_name"].fill_null("<none>").to_list() if "category_name" in items.columns else None
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"learned command embeddings": model.inputs.item_embedding.weight.detach()[: items.height]}
    text_path = dataset.text_embeddings_path
    if text_path.is_file():
        from safetensors.torch import load_file

        tables["text embeddings"] = load_file(str(text_path))["embeddings"][: items.height]
    written = []
    for title, table in tables.items():
        figure = _scatter(plt, _pca(table[2:].float()), categories[2:] if categories else None, title)  # no pad, oov
        written.append(_save(plt, figure, out / f"{title.split()[0]}_embeddings_map.png"))
    return written


@torch.no_grad()
def plot_attention(run: str | Path, history: list[str], out_dir: str | Path, timestamps=None) -> list[Path]:
    """One heatmap per layer of how much each position of a history attends to each other one (the
    mean over heads), for backbones built on a Hugging Face transformer; the history is cleaned and
    encoded as serving would read it."""
    from cmdrec.data.masking import next_event
    from cmdrec.serving import Predictor

    predictor = Predictor(run)
    encoder = getattr(getattr(predictor.model, "backbone", None), "model", None)
    if encoder is None or not hasattr(encoder, "set_attn_implementation"):
        raise InputError(f"{run}: its backbone ({predictor.config.model.backbone}) exposes no attention maps")
    prepared = predictor.prepare(history, timestamps)
    times = None if prepared.timestamps is None else [prepared.timestamps]
    batch = next_event(predictor.encoder.encode([prepared.commands], times, [prepared.attributes]),
                       predictor.config.model.masking, predictor.mask_ids)  # fmt: skip
    read = batch.features[batch.item_column][0][batch.padding_mask[0]].tolist()
    labels = [" > ".join(predictor.token_commands[i]) if i < len(predictor.token_commands) else "<mask>" for i in read]
    implementation = encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")  # sdpa returns no attention weights
    try:
        fused = predictor.model.inputs(batch.features)
        output = encoder(inputs_embeds=fused, attention_mask=batch.padding_mask.long(), output_attentions=True)
    finally:
        encoder.set_attn_implementation(implementation)
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for layer, weights in enumerate(output.attentions):
        matrix = weights[0].mean(0)[: len(labels), : len(labels)].float().numpy()
        size = max(4.0, 0.35 * len(labels) + 2)
        figure, axes = plt.subplots(figsize=(size, size))
        image = axes.imshow(matrix, cmap="viridis", vmin=0)
        axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        axes.set_yticks(range(len(labels)), labels, fontsize=7)
        axes.set_xlabel("attended command")
        axes.set_ylabel("reading command")
        axes.set_title(f"Attention, layer {layer + 1} (mean over heads)")
        figure.colorbar(image, ax=axes, fraction=0.046)
        written.append(_save(plt, figure, out / f"attention_layer{layer + 1}.png"))
    return written


def _pca(table: torch.Tensor) -> torch.Tensor:
    centred = table - table.mean(0)
    _, _, components = torch.pca_lowrank(centred, q=2, center=False)
    return centred @ components[:, :2]


def category_colours(categories: list[str]) -> dict[str, str]:
    """The most frequent categories get the palette in order; the same list gives the same colours."""
    from collections import Counter

    palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
        "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31",
    ]  # fmt: skip
    ranked = [name for name, _ in sorted(Counter(categories).items(), key=lambda kv: (-kv[1], kv[0]))]
    return {name: palette[i] if i < MAX_CATEGORIES else "#c7c7c7" for i, name in enumerate(ranked)}


def _scatter(plt, points: torch.Tensor, categories: list[str] | None, title: str):
    figure, axes = plt.subplots(figsize=(7, 6))
    if categories is None:
        axes.scatter(points[:, 0], points[:, 1], s=10)
    else:
        colours = category_colours(categories)
        for name, colour in colours.items():
            chosen = [i for i, c in enumerate(categories) if c == name]
            label = name if colour != "#c7c7c7" else None
            axes.scatter(points[chosen, 0], points[chosen, 1], s=12, color=colour, label=label, alpha=0.8)
        axes.legend(fontsize=7, markerscale=1.5, loc="best")
    axes.set_title(f"{title[0].upper()}{title[1:]} (PCA), coloured by category")
    axes.set_xlabel("component 1")
    axes.set_ylabel("component 2")
    return figure


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
