"""The files a run depends on beyond the recipe: the source file and every prompt template, hashed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from schemas.recipe import Recipe


def stage_templates(recipe: Recipe) -> list[str]:
    """Template files the recipe's stages name (params whose key ends in `template`), in order."""
    names: list[str] = []
    for stage in recipe.stages:
        for key, value in stage.params.items():
            if key.endswith("template") and isinstance(value, str) and value and value not in names:
                names.append(value)
    return names


def input_hashes(recipe: Recipe, base_dir: Path) -> dict[str, str]:
    """{"source:<path>": sha256, "template:<name>": sha256} for the manifest and the card."""
    from factory.sources import source_path
    from factory.templates import template_sha256

    hashes: dict[str, str] = {}
    if recipe.source.kind in ("file", "bundled") and recipe.source.path:
        path = source_path(recipe.source, base_dir)
        hashes[f"source:{recipe.source.path}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in stage_templates(recipe):
        hashes[f"template:{name}"] = template_sha256(name)
    return hashes
