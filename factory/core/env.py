"""Environment variables set for the length of a block: how the engine tells the processes it forks
(distilabel's step workers, Ray actors, servers) where this run's files and servers are."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def env_vars(values: Mapping[str, str]) -> Iterator[None]:
    """Set `values` in os.environ while the block runs (processes started inside inherit them), then
    give each variable back its previous value, or remove it when it had none, however the block ends."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
