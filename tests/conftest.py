import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def vs_dir():
    path = SHARED_DATA / "vs-interactions"
    if not (path / "MessageList.csv").is_file():
        pytest.skip(f"VS interaction logs not present at {path}")
    return path


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small preprocessed dataset (simulated BIM/CAD log, 12 users), built once per test session."""
    from cmdrec.data.pipeline import preprocess, process_logs
    from cmdrec.data.synthetic import sample_config, write_sample

    root = tmp_path_factory.mktemp("tiny")
    write_sample(root / "raw", users=12, sessions_per_user=6, seed=3)
    config = sample_config(str(root / "raw"), str(root / "out"))
    process_logs(config)
    preprocess(config)
    return root / "out" / "preprocessed"


@pytest.fixture(scope="session")
def tiny_data_with_developer(tmp_path_factory):
    """The tiny sample with its user also kept as an event attribute, prepared as the
    configs/full/*_vs_developer.yaml comments say to prepare the VS logs."""
    import dataclasses

    import polars as pl

    from cmdrec.data.pipeline import preprocess, process_logs
    from cmdrec.data.synthetic import sample_config, write_sample

    root = tmp_path_factory.mktemp("developer")
    events, _ = write_sample(root / "raw", users=12, sessions_per_user=6, seed=3)
    pl.read_csv(events).with_columns(pl.col("user_id").alias("developer_id")).write_csv(events)
    config = sample_config(str(root / "raw"), str(root / "out"))
    config = dataclasses.replace(
        config,
        source=dataclasses.replace(config.source, metadata_columns=("developer_id",)),
        features=dataclasses.replace(config.features, categorical_columns=("category", "developer_id")),
    )
    process_logs(config)
    preprocess(config)
    return root / "out" / "preprocessed"


def tiny_run(data_dir, runs_dir, name="run", **sections):
    """A RunConfig for a tiny, fast model; `sections` override model/training/eval fields."""
    from cmdrec.config import RunConfig, from_dict
    from cmdrec.models.registry import component

    given = sections.get("model", {})
    model = dict(backbone="gpt2", d_model=16, max_length=11, dropout=0.1) | given  # windows of 12 events
    flat_layers = {"n_layers", "n_heads", "ffn_dim", "ffn_activation"} & set(given)  # the spelling before sections
    if "layers" in component(model["backbone"]).sections and "layers" not in given and not flat_layers:
        model["layers"] = {"n_layers": 1, "n_heads": 2}
    training = dict(epochs=2, batch_size=16, warmup_steps=2, device="cpu", num_threads=1) | sections.get("training", {})
    plain = lambda section: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}  # noqa: E731
    return from_dict(
        RunConfig,
        {
            "name": name,
            "data_dir": str(data_dir),
            "runs_dir": str(runs_dir),
            "model": plain(model),
            "training": plain(training),
            "eval": plain(sections.get("eval", {})),
        },
    )
