"""End to end: the built-in `ptalign-demo` recipe with the real SmolLM2-135M-Instruct, offline (its answers
cut shorter: tests/conftest.py PTALIGN_DEMO_OVERRIDES).

The 135M model writes weak text, so these tests pin structure, accounting and schemas, never wording.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from factory.dataset.folder_check import check_folder
from schemas.records import ConversationalKTORow, ConversationalPair, KTORow, PreferencePair, SafetyTriple
from tests.conftest import PTALIGN_DEMO_OVERRIDES

pytestmark = pytest.mark.slow

CONFIGS = ("pairs_conversational", "kto_conversational", "triples", "pairs", "kto")


@pytest.fixture(scope="module")
def demo_run(ptalign_demo_run: Path) -> Path:
    return ptalign_demo_run  # one run per session, shared with the inspect report's tests


def rows(out: Path, config: str | None) -> list[dict]:
    import datasets

    return list(datasets.load_dataset(str(out), config, split="train"))


def test_the_demo_output_passes_check_and_loads_in_every_config(demo_run: Path) -> None:
    report = check_folder(demo_run)
    assert report.ok, report.problems
    triples = [SafetyTriple.model_validate(r) for r in rows(demo_run, "triples")]
    pairs = [PreferencePair.model_validate(r) for r in rows(demo_run, "pairs")]
    kto = [KTORow.model_validate(r) for r in rows(demo_run, "kto")]
    assert triples, "the demo produced no triple"
    assert len(pairs) == len(triples) and len(kto) == 2 * len(triples)
    by_id = {t.id: t for t in triples}
    for p in pairs:
        t = by_id[p.source_id]
        assert (p.prompt, p.chosen, p.rejected) == (t.instruction, t.positive, t.toxic)
    assert sorted((k.source_id, k.label) for k in kto) == sorted(
        [(t.id, True) for t in triples] + [(t.id, False) for t in triples]
    )
    # the conversational configs (the default first) hold the same text with roles
    default = [ConversationalPair.model_validate(r) for r in rows(demo_run, None)]
    assert [(c.prompt[0].content, c.chosen[0].content, c.rejected[0].content) for c in default] == [
        (p.prompt, p.chosen, p.rejected) for p in pairs
    ]
    kto_chat = [ConversationalKTORow.model_validate(r) for r in rows(demo_run, "kto_conversational")]
    assert [(k.prompt[0].content, k.completion[0].content, k.label) for k in kto_chat] == [
        (k.prompt, k.completion, k.label) for k in kto
    ]


def test_the_demo_counts_add_up_and_every_row_is_accounted_for(demo_run: Path) -> None:
    manifest = json.loads((demo_run / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["input"] == 2  # two seed domains (source.limit)
    filtered = pq.read_table(demo_run / "filtered" / "rows.parquet").to_pylist()
    quarantined = pq.read_table(demo_run / "quarantine" / "rows.parquet").to_pylist()
    assert sum(counts["filtered"].values()) == len(filtered)
    assert sum(counts["quarantined"].values()) == len(quarantined)
    assert counts["output"] == manifest["configs"]["triples"]["splits"]["train"]["num_rows"]
    # 2 domains x at most 2 topics x at most 2 instructions
    assert counts["output"] + len(filtered) + len(quarantined) <= 8
    assert all(q["reason"] and q["stage"] for q in quarantined)
    for stage in ("refine_constraints", "topics", "instructions", "positive", "toxic", "refine"):
        assert manifest["stages"][stage]["llm_calls"] > 0, stage
    assert manifest["contains_harmful_text"] is True


def test_demo_triples_respect_the_recipe(demo_run: Path) -> None:
    triples = [SafetyTriple.model_validate(r) for r in rows(demo_run, "triples")]
    for t in triples:
        assert t.id.split("/")[0] in ("harassment", "privacy") and t.id.count("/") == 2
        assert 0 <= t.rounds <= 1  # R = 1
        assert [s.name for s in t.scores] == ["harmlessness", "helpfulness", "harmfulness"]
        assert all(1 <= s.value <= 10 for s in t.scores)
        assert len(t.constraints_version) == 64
        assert len(t.toxic_spans) <= 4 or {s.label for s in t.toxic_spans} == {"diff"}
        # training rows hold the plain instruction: no constraints or demonstrations
        assert "rules" not in t.instruction and "Request:" not in t.instruction
    versions = {t.id.split("/")[0]: t.constraints_version for t in triples}
    for t in triples:  # rows of one domain share its refined constraint set
        assert t.constraints_version == versions[t.id.split("/")[0]]


def test_the_demo_card_warns_and_is_tagged(demo_run: Path) -> None:
    card = (demo_run / "README.md").read_text()
    assert "Content warning" in card and "not-for-all-audiences" in card
    assert "safepref publish" not in card  # the card describes the data, not how one tool uploads it
    for config in CONFIGS:
        assert f"config_name: {config}" in card


def test_plan_bounds_every_stages_llm_calls_of_the_run(demo_run: Path) -> None:
    from factory.engine.plan import plan_recipe
    from factory.engine.recipe import load_recipe

    manifest = json.loads((demo_run / "manifest.json").read_text())
    planned = {
        s.name: s.calls for s in plan_recipe(load_recipe("ptalign-demo", PTALIGN_DEMO_OVERRIDES)).stages
    }
    for stage, stats in manifest["stages"].items():
        assert stats["llm_calls"] <= planned[stage], (stage, stats["llm_calls"], planned[stage])
