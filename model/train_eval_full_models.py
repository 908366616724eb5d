"""Train the full model, its ablations and the baselines on one split over seeds, and write the
comparison report (Markdown, JSON, PNG plots). Same as `cmdrec compare`; run from the repository root:

    python model/train_eval_full_models.py data_dir=outputs/vs/preprocessed --out reports/vs
"""

import sys

from cmdrec.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["compare", *sys.argv[1:]]))
