"""The C²-Syn request filter and FHR choice (reference `syn/synthesize.py`), pure: the `c2syn.select`
step and C²-Eval's reference-style data builder share it without importing the pipeline."""

from __future__ import annotations

from typing import Any

from factory.core.rows import RowFailed, RowFiltered, parse_bool


def word_count(text: str) -> int:
    return len(text.split())


def select_fhr(row: dict[str, Any], keywords: list[str], min_words: int) -> str:
    """Return the full harmful response (FHR) of a PKU-SafeRLHF row, or raise RowFiltered.

    Two rules after the keyword rule, so the manifest says which one removed a row: `no_unsafe_response`
    (both answers safe) and `unsafe_response_too_short` (an unsafe answer exists, none has more than
    `min_words` words). They replace the former single rule `no_long_unsafe_response`.
    """
    prompt = row["prompt"]
    if not any(k in prompt for k in keywords):
        raise RowFiltered("no_keyword")
    any_unsafe = False
    for i in (0, 1):
        response = row[f"response_{i}"]
        if _as_bool(row[f"is_response_{i}_safe"], f"is_response_{i}_safe"):
            continue
        any_unsafe = True
        if isinstance(response, str) and word_count(response) > min_words:
            return response
    raise RowFiltered("unsafe_response_too_short" if any_unsafe else "no_unsafe_response")


def _as_bool(value: Any, field: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise RowFailed(f"{field}: {exc}") from None
