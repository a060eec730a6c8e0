"""Reuse a finished run, or start afresh: what a run keeps of what an earlier one left in its folder.

Decided after seeing distilabel 1.5.3 hang when it recovers a SIGKILLed run, and reuse a step's cached
batches after an upstream edit without writing any output (docs/design.md, "Resume and reuse"): only
a finished run of exactly this recipe on exactly these inputs is reloaded from distilabel's cache;
anything else starts afresh, and every LLM request it had finished comes from the request cache.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from factory.core.dataset_folder import MANIFEST_FILE, WORK_DIR, previous_manifest
from schemas.manifest import DatasetManifest

DISTILABEL_CACHE = "distilabel"  # under DIR/.work


@dataclass(frozen=True)
class Reuse:
    """What this run keeps: distilabel's cache of a finished run and, so that reusing it rewrites the
    same manifest and card, when and how fast that run was made."""

    finished: bool = False
    created_at: str | None = None
    wall_time_s: float | None = None


def may_reuse(out_dir: Path, recipe_hash: str) -> bool:
    """Whether `out_dir` may hold a finished run of this recipe (on the inputs it read: the question before
    the source is read), which needs no model server."""
    return _finished_run(out_dir, recipe_hash) is not None


def reuse_or_restart(out_dir: Path, recipe_hash: str, inputs: dict[str, str]) -> Reuse:
    """The finished run of this recipe and these inputs in `out_dir`, or a clean start: an unfinished or
    different earlier run loses its manifest and distilabel's cache (never the request cache)."""
    previous = _finished_run(out_dir, recipe_hash)
    if previous is not None and previous.inputs_sha256 == inputs:
        return Reuse(finished=True, created_at=previous.created_at, wall_time_s=previous.wall_time_s)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    shutil.rmtree(out_dir / WORK_DIR / DISTILABEL_CACHE, ignore_errors=True)
    return Reuse()


def _finished_run(out_dir: Path, recipe_hash: str) -> DatasetManifest | None:
    """The manifest of a run of this recipe in `out_dir` whose distilabel cache is still there."""
    previous = previous_manifest(out_dir)
    cache = out_dir / WORK_DIR / DISTILABEL_CACHE
    return (
        previous if previous is not None and previous.recipe_hash == recipe_hash and cache.is_dir() else None
    )
