"""What a run writes into its dataset folder besides the records: the manifest, the resolved recipe
and the card (docs/design.md, "The dataset folder"), and the provenance the exporters stamp on rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory import __version__
from factory.core.dataset_folder import MANIFEST_FILE
from factory.core.models import model_id, model_revision, stage_decodings
from factory.engine.recipe import LoadedRecipe
from factory.engine.resume import Reuse
from factory.export.base import ExportContext
from schemas.manifest import DatasetManifest, GeneratorInfo, RowCounts, StageStats
from schemas.recipe import Recipe
from schemas.registry import HARMFUL_TEXT_SCHEMAS


def export_context(loaded: LoadedRecipe) -> ExportContext:
    recipe = loaded.recipe
    stages = stage_decodings(recipe)
    if not stages:
        return ExportContext(recipe_name=recipe.name, recipe_hash=loaded.hash, seed=recipe.seed)
    first = stages[0]
    return ExportContext(
        recipe_name=recipe.name,
        recipe_hash=loaded.hash,
        seed=recipe.seed,
        generator_model=first.model,
        generator_revision=first.revision,
        decoding=first.decoding,
        stages=tuple(stages),
    )


def run_manifest(
    loaded: LoadedRecipe,
    *,
    source_label: str,
    configs: dict[str, Any],
    counts: RowCounts,
    stages: dict[str, StageStats],
    inputs: dict[str, str],
    reuse: Reuse,
    wall_time_s: float,
) -> DatasetManifest:
    """The manifest of a run; reusing a finished run keeps when and how fast it was made, so the
    manifest and the card come out byte-identical."""
    recipe = loaded.recipe
    return DatasetManifest(
        safepref_version=__version__,
        recipe_name=recipe.name,
        recipe_version=recipe.version,
        recipe_hash=loaded.hash,
        created_at=reuse.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        seed=recipe.seed,
        license=recipe.license,
        source=_source_record(recipe, source_label),
        generators=[
            GeneratorInfo(
                backend=name,
                kind=spec.kind,
                model=model_id(spec.model),
                revision=model_revision(spec.model, spec.revision),
                generation=spec.generation.model_dump(mode="json"),
            )
            for name, spec in recipe.backends.items()
        ],
        configs=configs,
        counts=counts,
        stages=stages,
        inputs_sha256=inputs,
        contains_harmful_text=any(info["schema"] in HARMFUL_TEXT_SCHEMAS for info in configs.values()),
        wall_time_s=reuse.wall_time_s or wall_time_s,
        prompt_tokens=sum(s.prompt_tokens for s in stages.values()),
        completion_tokens=sum(s.completion_tokens for s in stages.values()),
    )


def write_folder_files(out_dir: Path, recipe: Recipe, manifest: DatasetManifest) -> None:
    """manifest.json, recipe.resolved.yaml and the card (README.md), after the records."""
    from factory.dataset.card import render_card
    from factory.export.writer import write_resolved_recipe

    (out_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2, by_alias=True))
    write_resolved_recipe(out_dir, recipe.model_dump(mode="json"))
    (out_dir / "README.md").write_text(render_card(recipe, manifest, out_dir))


def _source_record(recipe: Recipe, label: str) -> dict[str, Any]:
    """The source as the recipe gives it, plus, for a Hub source, `read` = `hub:ID@COMMIT` actually read."""
    record: dict[str, Any] = recipe.source.model_dump(mode="json", exclude_defaults=True)
    if recipe.source.kind == "hub":
        record["read"] = label
    return record
