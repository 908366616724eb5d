"""docs/extending.md stays true: its Python blocks run, in order, in one fresh process, in a folder
where the sample is prepared as the quickstart prepares it; and a plugin named in CMDREC_PLUGINS
reaches the `cmdrec` command."""

import os
import re
import subprocess
import sys
from pathlib import Path

from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.synthetic import sample_config, write_sample

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"


def prepared_sample(folder: Path) -> None:
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        write_sample("data/sample", users=12, sessions_per_user=6, seed=3)
        config = sample_config()
        process_logs(config)
        preprocess(config)
    finally:
        os.chdir(cwd)


def run(arguments: list[str], folder: Path, **environment) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)]), **environment}
    return subprocess.run(arguments, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_every_example_of_the_extending_page_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 6
    prepared_sample(tmp_path)
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(blocks))
    done = run([sys.executable, str(script)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "causal_conv: test NDCG@10" in done.stdout


PLUGIN = """
import torch.nn.functional as F

from cmdrec.losses import register_loss

register_loss("smoothed", lambda logits, targets, config: F.cross_entropy(logits.float(), targets, label_smoothing=0.1))
"""


def test_a_plugin_named_in_the_environment_reaches_the_command(tmp_path):
    prepared_sample(tmp_path)
    (tmp_path / "my_components.py").write_text(PLUGIN)
    config = str(ROOT / "configs/baselines/gpt2.yaml")
    overrides = ["data_dir=outputs/sample/preprocessed", "runs_dir=runs", "training.epochs=1", "loss.name=smoothed"]
    train = [sys.executable, "-m", "cmdrec", "train", "--config", config, *overrides]
    refused = run(train, tmp_path)
    assert refused.returncode == 2 and "loss.name: unknown 'smoothed'" in refused.stderr
    done = run(train, tmp_path, CMDREC_PLUGINS="my_components")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test: ndcg@10" in done.stdout
    broken = run(train, tmp_path, CMDREC_PLUGINS="no_such_module")
    assert broken.returncode == 2 and "CMDREC_PLUGINS: cannot import plugin 'no_such_module'" in broken.stderr
