"""Which model and decoding each LLM stage used: for the manifest, per-row provenance and the card."""

from __future__ import annotations

from schemas.generation import merged_decoding
from schemas.provenance import StageDecoding
from schemas.recipe import Recipe
from schemas.step_params import STEP_PARAMS


def stage_decodings(recipe: Recipe) -> list[StageDecoding]:
    """Every LLM stage's model and decoding per role (the backend's with the stage's overrides)."""
    out = []
    for stage in recipe.stages:
        if stage.backend is None:
            continue
        spec = recipe.backends[stage.backend]
        model = STEP_PARAMS.get(stage.step)
        if model is not None:
            roles = model.model_validate(stage.params).decodings()
        else:  # an import-path step: the conventional `generation` override, if it has one
            roles = {"generation": stage.params.get("generation") or {}}
        base = spec.generation.model_dump()
        for role, override in roles.items():
            out.append(
                StageDecoding(
                    stage=stage.name,
                    role=role,
                    model=model_id(spec.model),
                    revision=model_revision(spec.model, spec.revision),
                    decoding=merged_decoding(base, override),
                )
            )
    return out


def model_id(model: str) -> str:
    if model == "bundled":
        from factory.backends.bundled_model import MODEL_ID

        return MODEL_ID
    return model


def model_revision(model: str, revision: str | None) -> str | None:
    if model == "bundled":
        from factory.backends.bundled_model import REVISION

        return REVISION
    return revision
