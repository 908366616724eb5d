"""Train and evaluate the baseline suite and write a results table. Same as `cmdrec baselines`;
run from the repository root, e.g. on the VS logs:

    python model/train_eval_baseline_models.py data_dir=outputs/vs/preprocessed runs_dir=runs/vs
"""

import sys

from cmdrec.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["baselines", *sys.argv[1:]]))
