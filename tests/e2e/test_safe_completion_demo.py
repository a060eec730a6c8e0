"""End to end: the `safe-completion-demo` recipe -- written only as YAML, Jinja templates and a demo
file over the generic steps and exporters -- run offline on the bundled SmolLM2-135M-Instruct (its answers
cut shorter: tests/conftest.py SAFE_COMPLETION_DEMO_OVERRIDES), checked, described by its card, and trained
on with `safepref train dpo-demo`.

The 135M model writes weak text and judges at random, so these tests pin structure, accounting and
schemas, never wording or scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from factory.dataset.folder_check import check_folder
from schemas.records import ConversationalPair, PreferencePair
from tests.conftest import REPO, SAFE_COMPLETION_DEMO_OVERRIDES

pytestmark = pytest.mark.slow

DEMO_IDS = {f"sc-{i}" for i in range(1, 7)}
RULES = {"fewer_than_2_items", "no_clear_winner", "no_preference_pair"}


def safepref(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory", *args], capture_output=True, text=True, cwd=REPO, timeout=900
    )


def rows(out: Path, config: str | None) -> list[dict]:
    import datasets

    return list(datasets.load_dataset(str(out), config, split="train"))


def test_the_demo_passes_check_and_its_pairs_load_in_both_configs(safe_completion_demo_run: Path) -> None:
    out = safe_completion_demo_run
    report = check_folder(out)
    assert report.ok, report.problems
    assert safepref("check", str(out)).returncode == 0
    chat = [ConversationalPair.model_validate(r) for r in rows(out, None)]  # the default config
    plain = [PreferencePair.model_validate(r) for r in rows(out, "pairs")]
    assert chat, "the demo produced no pair"
    assert [(c.prompt[-1].content, c.chosen[0].content, c.rejected[0].content) for c in chat] == [
        (p.prompt, p.chosen, p.rejected) for p in plain
    ]
    for pair in plain:  # best vs worst: one pair per prompt, ranked by the judge's scores
        assert pair.source_id in DEMO_IDS and pair.group_id == f"g-{pair.source_id}"
        assert pair.chosen_rank == 1 < pair.rejected_rank <= 4
        assert pair.principle == "judge_harmlessness_then_helpfulness"
    assert len({p.source_id for p in plain}) == len(plain)


def test_every_row_is_accounted_for_and_the_judge_judged_every_sample(safe_completion_demo_run: Path) -> None:
    manifest = json.loads((safe_completion_demo_run / "manifest.json").read_text())
    counts, stages = manifest["counts"], manifest["stages"]
    filtered = pq.read_table(safe_completion_demo_run / "filtered" / "rows.parquet").to_pylist()
    quarantined = pq.read_table(safe_completion_demo_run / "quarantine" / "rows.parquet").to_pylist()
    assert counts["input"] == 6
    assert counts["output"] + len(filtered) + len(quarantined) == 6
    assert sum(counts["filtered"].values()) == len(filtered) and set(counts["filtered"]) <= RULES
    assert all(q["reason"] and q["stage"] in ("respond", "judge") for q in quarantined)
    assert all(q["raw_output"] is not None for q in quarantined if q["stage"] == "judge")
    assert stages["respond"]["llm_calls"] == 4 * stages["respond"]["rows_in"]  # k = 4 samples
    assert stages["judge"]["llm_calls"] == 4 * 2 * stages["judge"]["rows_in"]  # 2 criteria per sample
    assert stages["rank"]["llm_calls"] == stages["margin"]["llm_calls"] == 0
    assert manifest["contains_harmful_text"] is True  # rejected answers may be harmful: gated
    from factory.engine.plan import plan_recipe
    from factory.engine.recipe import load_recipe

    planned = {
        s.name: s.calls
        for s in plan_recipe(load_recipe("safe-completion-demo", SAFE_COMPLETION_DEMO_OVERRIDES)).stages
    }
    assert all(stats["llm_calls"] <= planned[name] for name, stats in stages.items())


def test_the_card_describes_the_recipes_own_stages_and_claims_no_paper(
    safe_completion_demo_run: Path,
) -> None:
    card = (safe_completion_demo_run / "README.md").read_text()
    assert "none published: a custom safepref recipe" in card and "arxiv.org" not in card
    assert "## How the rows were made" in card
    for line in (
        "1. `respond` (`llm.generate`, backend `policy`): LLM generation: template "
        "`safe_completion/respond.jinja` as the user message -> 4 sampled answers per row in `responses`",
        "2. `judge` (`llm.judge`, backend `judge`): LLM judge: template `safe_completion/judge.jinja` asks "
        "for scores on [1, 10] for every item of `responses`",
        "`margin` (`filter`)",
        "`pairs_conversational` (exporter `pairs_conversational`): Preference pairs: the best against the "
        "worst response of `ranked`",
    ):
        assert line in card
    assert "not from people" in card and "Content warning" in card
    assert "template safe_completion/judge.jinja: sha256" in card


def test_recipes_lists_it_and_a_dpo_step_trains_on_it(safe_completion_demo_run: Path, tmp_path: Path) -> None:
    listed = safepref("recipes")
    assert (
        listed.returncode == 0
        and "safe-completion-demo" in listed.stdout
        and "safe-completion " in listed.stdout
    )
    out = tmp_path / "dpo"
    trained = safepref(
        "train", "dpo-demo", "--dataset", str(safe_completion_demo_run), "--out", str(out),
        "--set", "training.max_steps=1",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 1 and summary["record_schema"] == "conversational_pair"
    assert summary["recipe_name"] == "safe-completion-demo"
