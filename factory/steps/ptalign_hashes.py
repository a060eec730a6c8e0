"""What makes a PT-ALIGN run reproducible beyond the recipe hash: the seed file and the prompt templates.

`constraints_version` (per row) hashes the seed file's hash with the refined constraint sets the row
was generated under; `recorded_hashes` (per run) lists the seed file and every template a recipe's
PT-ALIGN stages render, with their sha256, for the manifest and the dataset card.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from schemas.recipe import Recipe


def constraints_version(seed_sha256: str, positive: list[str], toxic: list[str]) -> str:
    payload = json.dumps(
        {"seed_sha256": seed_sha256, "positive": positive, "toxic": toxic},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def stage_templates(recipe: Recipe) -> list[str]:
    """Template files named by the recipe's PT-ALIGN stages (params ending in `template`), in order."""
    names: list[str] = []
    for stage in recipe.stages:
        if not stage.step.startswith("ptalign."):
            continue
        for key, value in stage.params.items():
            if key.endswith("template") and isinstance(value, str) and value not in names:
                names.append(value)
    return names


def recorded_hashes(recipe: Recipe, base_dir: Path) -> dict[str, Any]:
    """{"seed_file": {"path", "sha256"} | None, "templates": {name: sha256}} for the manifest/card."""
    from factory.sources import source_path
    from factory.templates import template_sha256

    seed: dict[str, str] | None = None
    if recipe.source.file_schema == "ptalign_seed":
        path = source_path(recipe.source, base_dir)
        seed = {"path": str(recipe.source.path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {"seed_file": seed, "templates": {n: template_sha256(n) for n in stage_templates(recipe)}}
