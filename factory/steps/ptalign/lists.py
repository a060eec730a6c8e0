"""Turning an LLM's list answer into items, and deduplicating items (PT-ALIGN S1-S3).

Dedup follows Self-Align / Dromedary: case-insensitive exact match (after whitespace and trailing
punctuation are normalised), optionally also word-set Jaccard near-duplicates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MARKER = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.):])(?:\s+|$)")
_NUMBERED = re.compile(r"^\s*\(?(\d{1,3})[.):]\s")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
WORD_RE = re.compile(r"\w+")


def strip_list_marker(line: str) -> str:
    """'1. foo' / '- foo' / '(2) foo' -> 'foo', surrounding quotes dropped."""
    text = _MARKER.sub("", line, count=1).strip().rstrip(";,").strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def split_inline_numbering(line: str) -> list[str]:
    """'1. a; 2. b 3) c' -> ['1. a;', '2. b', '3) c']: a numbered line continuing with n+1, n+2, ..."""
    first = _NUMBERED.match(line)
    if first is None:
        return [line]
    pieces, start, n = [], 0, int(first.group(1))
    while (nxt := re.compile(rf"\s\(?{n + 1}[.):]\s").search(line, start + 1)) is not None:
        pieces.append(line[start : nxt.start()])
        start, n = nxt.start() + 1, n + 1
    pieces.append(line[start:])
    return pieces


def parse_list_items(
    text: str, *, max_items: int, min_chars: int, max_chars: int, truncated: bool = False
) -> list[str]:
    """The items of a one-per-line answer (numbered items run together on a line are split), in order.

    Lines shorter than `min_chars` or longer than `max_chars` (after the marker is stripped) are
    skipped. When the answer hit the token limit (`truncated`), its last line is cut off mid-item and
    is dropped if an earlier item exists.
    """
    items = [strip_list_marker(p) for line in text.splitlines() for p in split_inline_numbering(line)]
    items = [i for i in items if i]
    if truncated and len(items) > 1:
        items = items[:-1]
    return [i for i in items if min_chars <= len(i) <= max_chars][:max_items]


def dedup_key(text: str) -> str:
    """Case-insensitive exact-match key: casefolded, whitespace collapsed, trailing punctuation dropped."""
    return " ".join(text.casefold().split()).rstrip(" .!?;:,")


def word_set(text: str) -> frozenset[str]:
    return frozenset(w.casefold() for w in WORD_RE.findall(text))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass
class Deduper:
    """Remembers kept items; `is_duplicate` is True for an exact (or, if set, near) repeat of one."""

    near_jaccard: float | None = None
    _keys: set[str] = field(default_factory=set)
    _words: list[frozenset[str]] = field(default_factory=list)

    def is_duplicate(self, text: str) -> bool:
        """Check `text`, and remember it when it is new."""
        key = dedup_key(text)
        if key in self._keys:
            return True
        words = word_set(text)
        if self.near_jaccard is not None and any(jaccard(words, w) >= self.near_jaccard for w in self._words):
            return True
        self._keys.add(key)
        if self.near_jaccard is not None:
            self._words.append(words)
        return False
