"""The backend contract: requests in, completions out, same order; one bad request never raises."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from schemas.generation import GenerationParams

ROLES = frozenset({"system", "user", "assistant"})
RAW_LIMIT = 4096  # characters of a raw server body kept on a failed completion


@dataclass
class ChatRequest:
    """One conversation to complete. A final `assistant` message is a prefill the backend continues."""

    messages: list[dict[str, str]]
    params: GenerationParams


@dataclass
class Completion:
    """The new text only (never the prefill); `error` set means the request failed and `text` is empty."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    error: str | None = None
    raw: str | None = None


@runtime_checkable
class Backend(Protocol):
    model_id: str
    revision: str | None

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]: ...

    def close(self) -> None: ...


def failed(error: str, raw: str | None = None, prompt_tokens: int = 0) -> Completion:
    """A completion that records a failure; `raw` is truncated so a huge body cannot bloat the quarantine."""
    return Completion(
        text="",
        prompt_tokens=prompt_tokens,
        completion_tokens=0,
        finish_reason=None,
        error=error,
        raw=None if raw is None else raw[:RAW_LIMIT],
    )


def message_problem(messages: object) -> str | None:
    """Why `messages` is not a usable conversation, or None when it is."""
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] is not a dict"
        if message.get("role") not in ROLES:
            return f"messages[{i}].role must be one of {sorted(ROLES)}, got {message.get('role')!r}"
        if not isinstance(message.get("content"), str):
            return f"messages[{i}].content must be a string"
    return None


def ends_with_prefill(messages: Sequence[dict[str, str]]) -> bool:
    return bool(messages) and messages[-1].get("role") == "assistant"


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest occurrence of any stop string (the stop string itself is dropped)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def request_seed(seed: int, prompt: str) -> int:
    """The seed actually used for one request: a stable function of the recipe seed and the prompt.

    Same request + same seed -> same text (whatever else is in the batch), while different prompts
    sharing one recipe seed still draw independent random streams.
    """
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF  # fits every server's seed field
