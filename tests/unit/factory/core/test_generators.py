"""Per-stage decoding: the backend's decoding with each stage's overrides, per role, as recorded in
every row's provenance and in the card."""

from __future__ import annotations

from pathlib import Path

from factory.core.models import stage_decodings
from factory.dataset.card import render_card
from factory.engine.output import export_context
from factory.engine.recipe import load_recipe
from schemas.generation import DecodingOverride, merged_decoding
from schemas.manifest import ConfigInfo, DatasetManifest, GeneratorInfo, RowCounts


def test_merged_decoding_keeps_the_backend_value_where_the_override_is_none() -> None:
    base = {"max_new_tokens": 48, "temperature": 0.0, "repetition_penalty": 1.2}
    merged = merged_decoding(base, DecodingOverride(max_new_tokens=32).model_dump())
    assert (merged.max_new_tokens, merged.temperature, merged.repetition_penalty) == (32, 0.0, 1.2)


def test_ptalign_demo_records_each_stage_and_the_judge_separately(tmp_path: Path) -> None:
    loaded = load_recipe("ptalign-demo")
    decodings = {(d.stage, d.role): d.decoding for d in stage_decodings(loaded.recipe)}
    assert decodings[("topics", "generation")].max_new_tokens == 48  # the backend's
    assert decodings[("refine", "generation")].max_new_tokens == 32  # the stage's override
    judge = decodings[("refine", "judge_generation")]
    # no repetition_penalty: a managed transformers server cannot honour it (the recipe sets none)
    assert (judge.max_new_tokens, judge.temperature, judge.repetition_penalty) == (6, 0.0, None)
    stages = [s.name for s in loaded.recipe.stages if s.backend]
    assert [s for s, _ in decodings] == [s for s in stages for _ in range(1 + (s == "refine"))]

    prov = export_context(loaded).provenance("x")
    assert prov.decoding == decodings[("refine_constraints", "generation")]  # the first LLM stage
    assert {(s.stage, s.role) for s in prov.stages} == set(decodings)

    manifest = DatasetManifest(
        safepref_version="0",
        recipe_name="ptalign-demo",
        recipe_version="0",
        recipe_hash=loaded.hash,
        created_at="2026-01-01T00:00:00+00:00",
        seed=0,
        license="apache-2.0",
        configs={
            "triples": ConfigInfo.model_validate(
                {"schema": "safety_triple", "exporter": "ptalign.triples", "default": True, "splits": {}}
            )
        },
        counts=RowCounts(input=0, output=0),
        generators=[GeneratorInfo(backend="local", kind="transformers", model="m", generation={})],
    )
    card = render_card(loaded.recipe, manifest, tmp_path)
    assert "| refine | judge_generation | `HuggingFaceTB/SmolLM2-135M-Instruct` | max_new_tokens=6," in card


def test_the_sr_safety_check_records_its_judge_and_regeneration_decoding() -> None:
    loaded = load_recipe("c2syn-demo")
    data = loaded.recipe.model_dump(mode="json")
    data["stages"].insert(
        3,
        {
            "name": "sr_check",
            "step": "c2syn.safety_check",
            "backend": "local",
            "params": {"judge": "llm", "action": "regenerate"},
        },
    )
    from schemas.recipe import Recipe

    roles = {(d.stage, d.role): d.decoding for d in stage_decodings(Recipe.model_validate(data))}
    assert (
        roles[("sr_check", "judge")].max_new_tokens == 4 and roles[("sr_check", "judge")].temperature == 0.0
    )
    assert roles[("sr_check", "regenerate")].temperature == 0.8
    assert ("generate", "generation") in roles
