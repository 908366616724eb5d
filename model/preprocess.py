"""Sessions -> split -> feature workflow fitted on train -> sequences + schema.json.
Same as `cmdrec preprocess`; run from the repository root:

    python model/preprocess.py --config configs/data/vs.yaml [key.sub=value ...]
"""

import sys

from cmdrec.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["preprocess", *sys.argv[1:]]))
