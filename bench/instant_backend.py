"""A trivial instant backend for benchmarks of the non-LLM work (no model, returns canned text)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from factory.steps.c2syn.steps import C2Generate

WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "it",
    "is",
    "that",
    "people",
    "would",
    "be",
    "hurt",
    "which",
    "not",
    "okay",
    "so",
    "please",
    "instead",
    "consider",
]


class InstantBackend:
    model_id = "instant"
    revision = None

    def __init__(self, tokens: int = 128, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.tokens = tokens
        # a pool of ~128-token texts, cycled: generating text must cost nothing here
        self.pool = [
            " " + " ".join(rng.choice(WORDS) for _ in range(int(tokens * 0.75))) + f". ({i})"
            for i in range(997)
        ]
        self.i = 0

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        from factory.backends import Completion

        out = []
        for _ in requests:
            self.i += 1
            text = self.pool[self.i % len(self.pool)]
            out.append(
                Completion(text=text, prompt_tokens=64, completion_tokens=self.tokens, finish_reason="length")
            )
        return out

    def close(self) -> None:
        pass


class InstantGenerate(C2Generate):
    """`c2syn.generate` with the instant backend in place of a model."""

    def load(self) -> None:
        super().load()
        self._backend = InstantBackend()  # type: ignore[assignment]

    def decoding(self, key: str = "generation") -> Any:
        from schemas.generation import GenerationParams

        return GenerationParams(max_new_tokens=128)
