"""`max_prompt_chars`: requests too large to send are failed completions, not 50 MB posts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from factory.backends.base import Backend, ChatRequest, Completion, failed


class PromptCapped:
    """A backend that refuses, as a failed completion (the row is quarantined), any request whose
    messages hold more than `limit` characters, instead of sending a 50 MB prompt to a server."""

    def __init__(self, backend: Backend, limit: int) -> None:
        self._inner = backend
        self._limit = limit

    def __getattr__(self, name: str) -> Any:  # model_id, revision, unavailable(), ...
        return getattr(self._inner, name)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        sizes = [sum(len(str(m.get("content", ""))) for m in r.messages) for r in requests]
        fitting = [i for i, size in enumerate(sizes) if size <= self._limit]
        answers = iter(self._inner.generate([requests[i] for i in fitting]) if fitting else [])
        return [
            next(answers)
            if size <= self._limit
            else failed(f"the prompt has {size:,} characters; max_prompt_chars is {self._limit:,}")
            for size in sizes
        ]

    def close(self) -> None:
        self._inner.close()
