"""Documentation-grounded command descriptions (`text.documents: DIR`): the product's manual is cut
into chunks, embedded with the configured provider (cached as command texts are) and put in a
vector index; the chunks nearest each command are retrieved and given to the LLM with the command.

The index is faiss (`IndexFlatIP` over unit vectors: exact cosine search, which is right at a
manual's size; faiss is the most used maintained library for it, and writes and reads its index
as one file). It is kept beside the text cache under a name made of the provider, the model and
the hash of every chunk, so it is reloaded while the documents stay the same and rebuilt when one
changes. Each LLM answer records the ids and hashes of the chunks it was given, and its cache key
holds their text: a changed document asks the LLM again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic
from cmdrec.text.cache import EmbeddingCache

SUFFIXES = (".md", ".markdown", ".txt")
MAX_CHUNK_CHARACTERS = 1200


@dataclass(frozen=True)
class Chunk:
    id: str  # file#number
    text: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def read_chunks(directory: str | Path) -> list[Chunk]:
    """Markdown or text files cut at headings (and at blank lines where a section is long)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"text.documents: {directory} is not a directory")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise InputError(f"text.documents: no Markdown or text files in {directory}")
    chunks = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"{path}: not UTF-8 text ({error})") from None
        title = ""
        for number, section in enumerate(_sections(text)):
            heading = section.splitlines()[0].lstrip("#").strip() if section.startswith("#") else ""
            if section.startswith("# "):
                title = heading
            body = section if not title or section.startswith("# ") else f"{title}: {section}"
            chunks.append(Chunk(f"{path.relative_to(directory)}#{number}", body.strip()))
    return [c for c in chunks if c.text]


def _sections(text: str) -> list[str]:
    sections = [s for s in re.split(r"\n(?=#{1,6} )", text) if s.strip()]
    cut = []
    for section in sections:
        while len(section) > MAX_CHUNK_CHARACTERS:
            split = section.rfind("\n\n", 0, MAX_CHUNK_CHARACTERS)
            split = split if split > 0 else MAX_CHUNK_CHARACTERS
            cut.append(section[:split])
            section = section[split:].lstrip()
        cut.append(section)
    return cut


class DocumentIndex:
    """The chunks of a documentation folder, embedded and searchable by cosine similarity."""

    def __init__(self, directory: str | Path, provider, cache_dir: str | Path):
        import faiss

        self.chunks = read_chunks(directory)
        self.provider = provider
        self.cache = EmbeddingCache(Path(cache_dir), provider.name, provider.model_id)
        digest = hashlib.sha256(
            "\n".join([provider.name, provider.model_id, *(f"{c.id} {c.hash}" for c in self.chunks)]).encode()
        ).hexdigest()[:20]
        folder = Path(cache_dir) / "documents"
        self.index_path = folder / f"{digest}.faiss"
        self.rebuilt = not self.index_path.is_file()
        if self.rebuilt:
            vectors = self._vectors([c.text for c in self.chunks])
            self.index = faiss.IndexFlatIP(vectors.shape[1])
            self.index.add(vectors)
            folder.mkdir(parents=True, exist_ok=True)
            temporary = self.index_path.with_suffix(".tmp")
            faiss.write_index(self.index, str(temporary))
            temporary.replace(self.index_path)
            write_json_atomic(folder / f"{digest}.json", [{"id": c.id, "hash": c.hash} for c in self.chunks])
        else:
            self.index = faiss.read_index(str(self.index_path))
        if self.index.ntotal != len(self.chunks):
            raise InputError(f"{self.index_path} holds {self.index.ntotal} chunks, not {len(self.chunks)}: delete it")

    def _vectors(self, texts: list[str]) -> np.ndarray:
        missing = self.cache.missing(texts)
        if missing:
            self.cache.add(missing, self.provider.embed(missing))
        vectors = np.ascontiguousarray(self.cache.lookup(texts), dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def search(self, queries: list[str], k: int) -> list[list[Chunk]]:
        _, found = self.index.search(self._vectors(queries), min(k, len(self.chunks)))
        return [[self.chunks[i] for i in row if i >= 0] for row in found]


def documentation_prompt(chunks: list[Chunk]) -> str:
    return "\n".join(f"[{n}] {chunk.text}" for n, chunk in enumerate(chunks, 1))


def sources(chunks: list[Chunk]) -> list[dict]:
    return [{"id": c.id, "hash": c.hash} for c in chunks]
