"""LLM-augmented command descriptions (Du et al., arXiv 2504.05319): for each command an LLM
writes a short summary, a one-word classification and a one-word target. Answers are cached by
the hash of (model, prompt), so a re-run pays nothing; any OpenAI-compatible server works."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic
from cmdrec.text.documents import documentation_prompt, sources
from cmdrec.text.providers import Remote

log = logging.getLogger(__name__)
FIELDS = ("summary", "classification", "target")
SYSTEM = "You explain commands of a software application to a recommender system. Answer with one JSON object only."
PROMPT = (
    "Application: {application}\nCommand: {command}\nCategory: {category}\nDescription: {description}\n"
    "{documentation}\n"
    'Return JSON with keys "summary" (one sentence: what the command does), "classification" (one word: '
    'the kind of action) and "target" (one word: what it acts on).'
)


class DescriptionAugmenter:
    def __init__(
        self,
        model: str,
        base_url: str | None,
        cache_dir: str | Path,
        application: str,
        max_retries: int = 5,
        timeout_seconds: float = 60.0,
        max_retry_seconds: float = 300.0,
    ):
        self.model, self.application = model, application
        self.cache_dir = Path(cache_dir) / "llm"
        self.remote = Remote(base_url, timeout_seconds, max_retries, max_retry_seconds)
        self.calls = 0

    def describe(
        self, command: str, category: str | None, description: str | None, documentation: list | None = None
    ) -> dict:
        """`documentation`: chunks of the product's manual (cmdrec.text.documents), quoted in the prompt;
        the answer records their ids and hashes."""
        quoted = ""
        if documentation:
            quoted = "From the application's documentation:\n" + documentation_prompt(documentation) + "\n"
        prompt = PROMPT.format(
            application=self.application,
            command=command,
            category=category or "unknown",
            description=description or "none",
            documentation=quoted,
        )
        digest = hashlib.sha256(f"{self.model}\n{prompt}".encode()).hexdigest()
        path = self.cache_dir / f"{digest}.json"
        if path.is_file():
            return json.loads(path.read_text())
        response = self.remote.call(
            "chat completion",
            lambda: self.remote.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                response_format={"type": "json_object"},
                temperature=0,
            ),
        )
        self.calls += 1
        content = self.remote.read("chat completion", lambda: str(response.choices[0].message.content))
        try:
            answer = json.loads(content)
            answer = {field: str(answer[field]).strip() for field in FIELDS}
            if documentation:
                answer["sources"] = sources(documentation)
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(
                f"LLM answer for command {command!r} is not JSON with keys {list(FIELDS)}: {content[:200]!r}"
            ) from error
        write_json_atomic(path, answer)
        return answer
