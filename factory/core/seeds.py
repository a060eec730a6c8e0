"""Every seed derived from a user's seed, in one place.

A derived seed is a stable function of the user's seed and of what it is for (a prompt, a row, a
sample), never of batch order or of the other rows, so a resumed run, a re-run and a run cut into other
batches draw the same random numbers. Seeds are 31-bit: every backend and server accepts them.

The values must never change: they are part of the request cache's keys and of the published data
(tests/e2e/test_resume.py, tests/unit/factory/backends/test_request_cache.py), hence the historical
conventions below (parts joined by NUL or by `:` under a namespace; the first 4 bytes of the digest
or the first 8 modulo 2**31), each kept for the seeds that already use it.
"""

from __future__ import annotations

import hashlib
import random

_SEED_BITS = 0x7FFFFFFF


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _keyed(namespace: str, seed: int, key: tuple[object, ...]) -> str:
    return ":".join([namespace, str(seed), *map(str, key)])


def seed_for(*parts: object) -> int:
    """A sampling seed from what identifies one request (the recipe seed, then e.g. the prompt, or the
    stage, row id and sample), its parts joined by NUL."""
    return int.from_bytes(_digest("\0".join(map(str, parts)))[:4], "big") & _SEED_BITS


def prompt_seed(seed: int, prompt: str) -> int:
    """The seed a backend sends with one request: same prompt + same seed -> same text, whatever else
    is in the batch, while different prompts under one seed draw independent streams."""
    return seed_for(seed, prompt)


def row_request_seed(method: str, seed: int, *key: object) -> int:
    """The sampling seed a step sets on one of a row's requests (e.g. `ptalign`, stage, row id, tag)."""
    return int.from_bytes(_digest(_keyed(method, seed, key))[:4], "big") & _SEED_BITS


def sample_seed(namespace: str, seed: int, *key: object) -> int:
    """The sampling seed of one evaluation sample (e.g. `c2eval`, row id, prefix length, sample)."""
    return int.from_bytes(_digest(_keyed(namespace, seed, key))[:8], "big") % (_SEED_BITS + 1)


def keyed_rng(namespace: str, seed: int, *key: object) -> random.Random:
    """A private RNG for one row or sample: its draws do not depend on batch order or other rows."""
    return random.Random(_keyed(namespace, seed, key))
