"""Embed every command's text (optionally LLM-augmented) into text_embeddings.safetensors beside
the preprocessed sequences. Same as `cmdrec embed`; run from the repository root:

    python model/pretrained_text_embedding.py --config configs/data/vs.yaml [text.provider=openai text.augment=true ...]
"""

import sys

from cmdrec.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["embed", *sys.argv[1:]]))
