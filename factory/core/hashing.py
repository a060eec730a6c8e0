"""The files a run depends on beyond the recipe: the source file and every prompt template, hashed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from schemas.recipe import Recipe


def stage_templates(recipe: Recipe) -> list[str]:
    """Template files the recipe's stages name (params whose key ends in `template`), in order."""
    names: list[str] = []
    for stage in recipe.stages:
        for key, value in stage.params.items():
            if key.endswith("template") and isinstance(value, str) and value and value not in names:
                names.append(value)
    return names


def rows_sha256(rows: Iterable[dict[str, Any]]) -> str:
    """sha256 of rows as canonical JSON lines (sorted keys): the content, whatever the storage."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def input_hashes(recipe: Recipe, base_dir: Path, rows: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """{"source:<path>": sha256, "template:<name>": sha256} for the manifest and the card.

    A Hub source is hashed by the rows read (`rows`), so a dataset that changed upstream under an
    unpinned revision is a different input, as an edited local file is.
    """
    from factory.core.sources import source_path
    from factory.core.templates import template_sha256

    hashes: dict[str, str] = {}
    if recipe.source.kind in ("file", "bundled") and recipe.source.path:
        path = source_path(recipe.source, base_dir)
        hashes[f"source:{recipe.source.path}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    elif recipe.source.kind == "hub" and rows is not None:
        hashes[f"source:hub:{recipe.source.dataset}"] = rows_sha256(rows)
    for name in stage_templates(recipe):
        hashes[f"template:{name}"] = template_sha256(name, str(base_dir))
    return hashes


_SAMPLE = 1 << 20  # bytes read at the start, middle and end of a large file


def folder_fingerprint(folder: Path) -> str:
    """sha256 over every file's relative name and size, the whole of small files and, of large ones
    (weights), 1 MiB at the start, middle and end: cheap on a 10 GB model, and two fine-tunes of one
    architecture (same file sizes) still differ."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + str(size).encode() + b"\0")
        with path.open("rb") as fh:
            if size <= 3 * _SAMPLE:
                digest.update(fh.read())
                continue
            for offset in (0, size // 2, size - _SAMPLE):
                fh.seek(offset)
                digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()
