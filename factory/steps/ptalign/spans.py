"""Harmful spans of a toxic response: [start, end) character offsets, sorted and non-overlapping (S7).

Spans come from quotes the model copies out of the toxic text (located in it, case-insensitively) or
from a word diff against the positive response; whatever their origin they are clamped to the text,
sorted and merged before they are stored, so they always satisfy `schemas.records.ToxicSpan`.
"""

from __future__ import annotations

from collections.abc import Iterable

from factory.steps.ptalign.lists import WORD_RE, strip_list_marker, word_set

Span = tuple[int, int]


def clamp_spans(spans: Iterable[Span], length: int) -> list[Span]:
    """Clamp to [0, length], drop empty spans, sort, and merge overlapping or touching ones."""
    clamped = sorted((max(0, s), min(length, e)) for s, e in spans)
    merged: list[Span] = []
    for start, end in clamped:
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def validate_spans(spans: Iterable[Span], text: str) -> list[Span]:
    """The spans unchanged if they are valid for `text`; ValueError naming the first bad one otherwise."""
    out = list(spans)
    last_end = 0
    for start, end in out:
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span [{start}, {end}) is not inside the text ({len(text)} chars)")
        if start < last_end:
            raise ValueError(f"span [{start}, {end}) overlaps or precedes the previous one")
        last_end = end
    return out


def parse_quotes(answer: str, min_chars: int) -> list[str]:
    """The phrases of a one-per-line answer (list markers and surrounding quotes removed)."""
    quotes = [strip_list_marker(line) for line in answer.splitlines()]
    return [q for q in quotes if len(q) >= min_chars]


def locate_quotes(text: str, quotes: Iterable[str]) -> list[Span]:
    """Every occurrence of every quote in `text` (case-insensitive); quotes not in the text give none."""
    folded = text.casefold()
    # casefold never shrinks a character, so equal lengths mean offsets line up one to one
    fold = len(folded) == len(text)
    haystack = folded if fold else text
    spans: list[Span] = []
    for quote in quotes:
        needle = quote.casefold() if fold else quote
        start = haystack.find(needle)
        while start >= 0:
            spans.append((start, start + len(needle)))
            start = haystack.find(needle, start + len(needle))
    return clamp_spans(spans, len(text))


def diff_spans(toxic: str, positive: str, min_word_chars: int) -> list[Span]:
    """Words of `toxic` (at least `min_word_chars` long) that `positive` never uses; adjacent ones merge."""
    used = word_set(positive)
    spans: list[Span] = []
    for m in WORD_RE.finditer(toxic):
        word = m.group(0)
        if len(word) < min_word_chars or word.casefold() in used:
            continue
        if spans and not toxic[spans[-1][1] : m.start()].strip():
            spans[-1] = (spans[-1][0], m.end())
        else:
            spans.append((m.start(), m.end()))
    return spans
