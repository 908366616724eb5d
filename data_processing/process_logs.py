"""Raw command log -> cleaned sessions. Same as `cmdrec process`; run from the repository root:

python data_processing/process_logs.py --config configs/data/vs.yaml [key.sub=value ...]
"""

import sys

from cmdrec.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["process", *sys.argv[1:]]))
