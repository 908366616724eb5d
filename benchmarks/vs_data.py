"""The VS logs as every benchmark reads them: configs/data/vs.yaml pointed at the logs' files, with the
benchmark's output folders and overrides. One definition, so the benchmarks measure the same data."""

from __future__ import annotations

from pathlib import Path

from cmdrec.config import DataConfig, load_data_config

ROOT = Path(__file__).resolve().parents[1]
VS_LOGS = ROOT.parent / "shared/data/vs-interactions"  # ABB Developer Interaction Logs (Damevski et al., TSE 2016)


def have_vs_logs(logs: str | Path = VS_LOGS) -> bool:
    return (Path(logs) / "MessageList.csv").is_file()


def vs_config(
    logs: str | Path = VS_LOGS,
    processed_dir: str | Path | None = None,
    preprocessed_dir: str | Path | None = None,
    overrides: list[str] = (),
) -> DataConfig:
    """configs/data/vs.yaml on the logs at `logs` (BlazeData_Dev_*.csv.gz and MessageList.csv)."""
    logs = Path(logs)
    if not have_vs_logs(logs):
        raise SystemExit(f"VS logs not found at {logs}; nothing measured")
    folders = {"processed_dir": processed_dir, "preprocessed_dir": preprocessed_dir}
    return load_data_config(
        ROOT / "configs/data/vs.yaml",
        [
            f"source.path={logs}/BlazeData_Dev_*.csv.gz",
            f"catalogue.path={logs}/MessageList.csv",
            *[f"{key}={value}" for key, value in folders.items() if value is not None],
            *overrides,
        ],
    )
