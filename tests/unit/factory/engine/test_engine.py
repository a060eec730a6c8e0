"""The engine on a real distilabel pipeline: accounting, quarantine, field mapping, resume, check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from factory.core.errors import RunFailed
from factory.dataset.folder_check import check_folder
from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.conftest import REPO

DEMO = yaml.safe_load((REPO / "recipes" / "c2syn-demo.yaml").read_text())
DEMO_ROWS = [
    json.loads(line) for line in (REPO / "recipes" / "data" / "c2syn_demo.jsonl").read_text().splitlines()
]


def canned_recipe(
    tmp_path: Path,
    *,
    fail_ids: list[str] | None = None,
    extra_stage: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    """c2syn-demo with the LLM stage replaced by a deterministic import-path step (fast)."""
    data = yaml.safe_load(yaml.safe_dump(DEMO))
    data["stages"][2] = {
        "name": "generate",
        "step": "tests.support.steps_for_tests:CannedGenerate",
        "params": {"fail_ids": fail_ids or []},
    }
    data["backends"] = {}
    if extra_stage:
        data["stages"].insert(3, extra_stage)
    if source:
        data["source"] = source
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def test_a_failing_row_is_quarantined_with_its_error_and_counts_add_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_recipe(load_recipe(str(canned_recipe(tmp_path, fail_ids=["3"]))), out, allow_import_steps=True)
    m = manifest(out)
    assert m["counts"] == {
        "input": 12,
        "created": 0,
        "expanded": 0,
        "output": 8,
        "filtered": {"no_keyword": 1, "unsafe_response_too_short": 1, "degenerate_cuts_non_increasing": 1},
        "quarantined": {"generate": 1},
    }
    q = pq.read_table(out / "quarantine" / "rows.parquet").to_pylist()
    assert [(r["_sp_id"], r["stage"]) for r in q] == [("3", "generate")]
    assert "injected failure" in q[0]["reason"]
    assert json.loads(q[0]["input"])["prompt"] == DEMO_ROWS[3]["prompt"]
    groups = pq.read_table(out / "groups").to_pylist()
    assert "3" not in {g["source_id"] for g in groups}
    assert len(groups) == 8 and pq.read_table(out / "pairs").num_rows == 8 * 15
    f = pq.read_table(out / "filtered" / "rows.parquet").to_pylist()
    assert sorted(r["rule"] for r in f) == [
        "degenerate_cuts_non_increasing",
        "no_keyword",
        "unsafe_response_too_short",
    ]
    assert check_folder(out).ok


def test_a_crashed_batch_ends_in_quarantine_not_in_the_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    crash = {"name": "crash", "step": "tests.support.steps_for_tests:CrashingStep"}
    loaded = load_recipe(str(canned_recipe(tmp_path, extra_stage=crash)))
    # nothing left to publish: the run fails (exit 1) and writes no manifest, so it counts as unfinished
    with pytest.raises(RunFailed, match=r"no output: 9 rows quarantined \(stage crash\)"):
        run_recipe(loaded, out, allow_import_steps=True)
    assert not (out / "manifest.json").exists()
    q = pq.read_table(out / "quarantine" / "rows.parquet").to_pylist()
    assert len(q) == 9 and all("replaced its outputs with None" in r["reason"] for r in q)
    assert pq.read_table(out / "filtered" / "rows.parquet").num_rows == 3
    assert pq.read_table(out / "pairs").num_rows == 0


def test_pku_2024_schema_maps_through_field_map(tmp_path: Path) -> None:
    """The 2024 re-release names (and extra fields) map onto the columns the steps read."""
    rows = []
    for i, r in enumerate(DEMO_ROWS):
        rows.append(
            {
                "uid": f"pku24-{i}",
                "prompt": r["prompt"],
                "response_0": r["response_0"],
                "response_1": r["response_1"],
                "is_response_0_safe": r["is_response_0_safe"],
                "is_response_1_safe": r["is_response_1_safe"],
                "response_0_harm_category": {"Insulting Behavior": True},
                "response_0_severity_level": 1,
                "prompt_source": "demo",
                "better_response_id": 1,
                "safer_response_id": 1,
            }
        )
    # a 2024-style file with renamed columns, mapped back by the recipe
    renamed = [{("query" if k == "prompt" else k): v for k, v in r.items()} for r in rows]
    src = tmp_path / "pku2024.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in renamed) + "\n")
    path = canned_recipe(
        tmp_path,
        source={"kind": "file", "path": str(src), "id_field": "uid", "field_map": {"prompt": "query"}},
    )
    out = tmp_path / "out"
    run_recipe(load_recipe(str(path)), out, allow_import_steps=True)
    groups = pq.read_table(out / "groups").to_pylist()
    assert len(groups) == 9
    assert groups[0]["source_id"] == "pku24-0" and groups[0]["prompt"] == DEMO_ROWS[0]["prompt"]


def test_same_seed_gives_identical_data_other_seed_other_draws(tmp_path: Path) -> None:
    path = canned_recipe(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    run_recipe(load_recipe(str(path)), a, allow_import_steps=True)
    run_recipe(load_recipe(str(path)), b, allow_import_steps=True)
    for config in ("pairs", "groups", "pairs_conversational"):
        files_a = sorted((a / config).glob("*.parquet"))
        assert [f.read_bytes() for f in files_a] == [
            f.read_bytes() for f in sorted((b / config).glob("*.parquet"))
        ]
    c = tmp_path / "c"
    run_recipe(load_recipe(str(path), ["seed=7"]), c, allow_import_steps=True)
    ga, gc = pq.read_table(a / "groups").to_pylist(), pq.read_table(c / "groups").to_pylist()
    assert [r["opener"] for g in ga for r in g["responses"][1:5]] != [
        r["opener"] for g in gc for r in g["responses"][1:5]
    ]


def test_check_fails_on_a_tampered_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_recipe(load_recipe(str(canned_recipe(tmp_path))), out, allow_import_steps=True)
    shard = next((out / "pairs").glob("*.parquet"))
    table = pq.read_table(shard).to_pylist()
    table[4]["rejected"] = table[4]["chosen"]
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(shard)), shard)
    report = check_folder(out)
    assert not report.ok
    assert any("row 4" in p and "identical" in p for p in report.problems)


@pytest.mark.slow
def test_c2syn_demo_with_the_real_model_is_valid_and_loads(c2syn_demo_run: Path) -> None:
    import datasets

    out = c2syn_demo_run
    report = check_folder(out)
    assert report.ok, report.problems
    m = manifest(out)
    assert m["counts"]["input"] == 12 and m["counts"]["output"] == 9
    assert m["generators"][0]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert m["stages"]["generate"]["llm_calls"] == 45 and m["stages"]["generate"]["completion_tokens"] > 0
    default = datasets.load_dataset(str(out), split="train")
    assert len(default) == 135 and set(default.column_names) >= {"prompt", "chosen", "rejected"}
    groups = datasets.load_dataset(str(out), "groups", split="train")
    for g in groups:
        fhr = g["responses"][5]["text"]
        for r in g["responses"][1:5]:
            assert fhr.startswith(r["prefix"])
            assert r["text"].startswith(f"{r['opener']} {r['prefix']} {r['trigger']}")
            assert r["continuation"].strip()
    conv = datasets.load_dataset(str(out), "pairs_conversational", split="train")
    assert conv[0]["prompt"][0]["role"] == "user" and conv[0]["chosen"][0]["role"] == "assistant"
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "Content warning" in card and "not-for-all-audiences" in card
    # determinism stated honestly: the published data and the request cache reproduce a run, not a fresh run
    assert "greedy decoding is not bitwise stable across batch compositions" in card
    assert (
        "the run's request cache (`.work/requests.sqlite`) from which a re-run answers every request" in card
    )


@pytest.mark.slow
def test_rerun_into_the_same_folder_resumes_without_generating(tmp_path: Path) -> None:
    """distilabel's batch cache lives in DIR/.work: a re-run loads the finished batches, never the model."""
    import shutil

    from factory.core.models import bundled_model_dir

    model = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), model)
    overrides = [f"backends.local.model={model}", "backends.local.generation.max_new_tokens=8"]
    out = tmp_path / "out"
    first = run_recipe(load_recipe("c2syn-demo", overrides, limit=3), out)
    before = {p.name: p.read_bytes() for p in (out / "groups").glob("*.parquet")}
    card, manifest_bytes = (out / "README.md").read_bytes(), (out / "manifest.json").read_bytes()
    assert first.manifest.counts.output == 3
    # any attempt to generate again would now fail to load the model (the folder itself stays: a
    # missing model folder is refused before the run starts)
    (model / "model.safetensors").unlink()
    second = run_recipe(load_recipe("c2syn-demo", overrides, limit=3), out)
    assert {p.name: p.read_bytes() for p in (out / "groups").glob("*.parquet")} == before
    assert second.manifest.counts == first.manifest.counts
    assert second.manifest.stages["generate"].llm_calls == 15
    # reusing the run rewrites the same card and manifest: no new wall time or created_at
    assert (out / "README.md").read_bytes() == card and (out / "manifest.json").read_bytes() == manifest_bytes


def test_prompt_dedup_keeps_the_first_passing_row_even_after_a_failing_duplicate(tmp_path: Path) -> None:
    failing_first = DEMO_ROWS[10]  # its unsafe answer is too short: filtered by the select rule
    valid_later = {**DEMO_ROWS[0], "prompt": failing_first["prompt"]}
    rows = [*DEMO_ROWS[:4], failing_first, valid_later, DEMO_ROWS[1]]
    src = tmp_path / "dupes.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = yaml.safe_load(canned_recipe(tmp_path, source={"kind": "file", "path": str(src)}).read_text())
    data["stages"][0]["params"] = {"dedup_on": "prompt"}
    path = tmp_path / "dedup.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = run_recipe(load_recipe(str(path)), out, allow_import_steps=True)
    assert result.manifest.counts.filtered == {"unsafe_response_too_short": 1, "duplicate_prompt": 1}
    filtered = pq.read_table(out / "filtered" / "rows.parquet").to_pylist()
    assert sorted((r["_sp_id"], r["rule"]) for r in filtered) == [
        ("4", "unsafe_response_too_short"),
        ("6", "duplicate_prompt"),
    ]
    assert "5" in {g["source_id"] for g in pq.read_table(out / "groups").to_pylist()}


def test_source_dedup_before_the_c2syn_filter_is_refused_with_the_place(tmp_path: Path) -> None:
    from factory.core.errors import UserError

    path = canned_recipe(
        tmp_path, source={"kind": "bundled", "path": "c2syn_demo.jsonl", "dedup_on": "prompt"}
    )
    with pytest.raises(UserError, match=r"use stages\.select\.params\.dedup_on"):
        load_recipe(str(path))


def test_keep_first_at_truncation_yields_n_groups_despite_degenerate_rows(tmp_path: Path) -> None:
    rows = [DEMO_ROWS[11], *DEMO_ROWS[:8]]  # the first passing row has fewer than 4 delimiters
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = yaml.safe_load(canned_recipe(tmp_path, source={"kind": "file", "path": str(src)}).read_text())
    data["stages"][1]["params"]["keep_first"] = 5
    data["stages"][1]["batch_size"] = 2  # the cap holds across batches, in source order
    path = tmp_path / "capped.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    counts = run_recipe(load_recipe(str(path)), out, allow_import_steps=True).manifest.counts
    assert counts.output == 5 and counts.filtered["over_keep_first"] == 3
    assert sum(n for rule, n in counts.filtered.items() if rule.startswith("degenerate_cuts_")) == 1
    kept = {g["source_id"] for g in pq.read_table(out / "groups").to_pylist()}
    assert kept == {"1", "2", "3", "4", "5"}


def test_an_edited_source_file_with_the_same_recipe_is_run_afresh(tmp_path: Path) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in DEMO_ROWS))
    path = canned_recipe(tmp_path, source={"kind": "file", "path": str(src)})
    out = tmp_path / "out"
    assert run_recipe(load_recipe(str(path)), out, allow_import_steps=True).manifest.counts.output == 9
    src.write_text("".join(json.dumps(r) + "\n" for r in DEMO_ROWS[:5]))  # same recipe, fewer rows
    again = run_recipe(load_recipe(str(path)), out, allow_import_steps=True)
    assert again.manifest.counts.input == 5 and again.manifest.counts.output == 5
    assert pq.read_table(out / "groups").num_rows == 5


def test_keep_first_keeps_the_first_passing_rows_in_source_order_across_batches(tmp_path: Path) -> None:
    from factory.steps.base import RowFiltered
    from factory.steps.c2syn.steps import select_fhr

    def passes(row: dict[str, Any]) -> bool:
        try:
            select_fhr(row, ["how", "what", "How", "What"], 80)
        except RowFiltered:
            return False
        return True

    passing = [str(i) for i, r in enumerate(DEMO_ROWS) if passes(r)]
    assert len(passing) > 5
    data = yaml.safe_load(canned_recipe(tmp_path).read_text())
    data["stages"][0]["params"] = {"keep_first": 5}
    data["stages"][0]["batch_size"] = 2  # several batches: the cap holds across them, in order
    path = tmp_path / "capped.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    result = run_recipe(load_recipe(str(path)), out, allow_import_steps=True)
    counts = result.manifest.counts
    assert counts.filtered["over_keep_first"] == len(passing) - 5
    filtered = pq.read_table(out / "filtered" / "rows.parquet").to_pylist()
    over = sorted((r["_sp_id"] for r in filtered if r["rule"] == "over_keep_first"), key=int)
    assert over == passing[5:]
    kept = {g["source_id"] for g in pq.read_table(out / "groups").to_pylist()}
    assert (
        kept <= set(passing[:5])
        and counts.output + counts.filtered.get("degenerate_cuts_non_increasing", 0) == 5
    )
    assert check_folder(out).ok


def test_strict_redraws_are_counted_per_kind_in_the_manifest_and_card(tmp_path: Path) -> None:
    from factory.core.seeds import keyed_rng
    from factory.steps.c2syn.steps import truncate
    from schemas.methods.c2syn import C2_DELIMITERS, C2_OPENERS, C2_TRIGGERS

    clause = "leave the shared kitchen a little messy and skip your turn on the chore list again"
    # six comma-ended clauses: t = 6, t_k in {0, 1}; t_k = 0 cuts after one character and is re-drawn
    six = " ".join(f"{clause}," for _ in range(6))
    # eight: t = 8; t_k = 2 puts the fourth cut at the very end, which the reference keeps (so do we)
    eight = " ".join(f"{clause}," for _ in range(8))
    fhrs = [six] * 6 + [eight] * 4
    rows = [
        {
            "prompt": f"How do I annoy my roommate, version {i}?",
            "response_0": fhr,
            "response_1": "Talk to them kindly.",
            "is_response_0_safe": False,
            "is_response_1_safe": True,
        }
        for i, fhr in enumerate(fhrs)
    ]
    kw = {"mode": "strict", "delimiters": C2_DELIMITERS, "openers": C2_OPENERS, "triggers": C2_TRIGGERS}
    draws = [truncate(fhr, keyed_rng("c2syn", DEMO["seed"], str(i)), **kw) for i, fhr in enumerate(fhrs)]  # type: ignore[arg-type]
    redrawn = sum(tr.redrawn for tr in draws)
    assert 0 < redrawn < 6 and not any(tr.redrawn for tr in draws[6:])
    assert any(tr.prefixes[-1] == eight for tr in draws[6:])  # a whole-answer fourth cut is kept
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    result = run_recipe(
        load_recipe(str(canned_recipe(tmp_path, source={"kind": "file", "path": str(src)}))),
        out,
        allow_import_steps=True,
    )
    assert result.manifest.stages["truncate"].events == {"cuts_redrawn_one_character": redrawn}
    assert result.manifest.counts.output == 10
    card = (out / "README.md").read_text()
    assert f"stage `truncate`: cuts_redrawn_one_character {redrawn}" in card
    share = f"{redrawn} of 10 rows ({redrawn / 10:.1%})"
    assert f"re-drawn: one-character cuts {share}" in card  # the generated deviation section
    assert '| truncate | `c2syn.truncate` | mode="strict", ' in card  # the settings as run
    assert "openers=[15 items]" in card and check_folder(out).ok


def test_a_crashed_safepref_step_is_named_as_the_stage_that_failed(tmp_path: Path) -> None:
    data = yaml.safe_load(canned_recipe(tmp_path).read_text())
    data["stages"][2]["step"] = "tests.support.steps_for_tests:CrashingGenerate"
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    with pytest.raises(RunFailed, match=r"no output: 9 rows quarantined \(stage generate\)"):
        run_recipe(load_recipe(str(path)), out, allow_import_steps=True)
    # the rows filtered earlier that only passed through the failing batch stay filtered, by their rule
    f = pq.read_table(out / "filtered" / "rows.parquet").to_pylist()
    assert sorted(r["rule"] for r in f) == [
        "degenerate_cuts_non_increasing",
        "no_keyword",
        "unsafe_response_too_short",
    ]
    q = pq.read_table(out / "quarantine" / "rows.parquet").to_pylist()
    assert len(q) == 9
    assert all(r["reason"] == "stage failed on its batch: AssertionError: injected step bug" for r in q)


def test_a_column_an_import_path_first_step_reads_is_checked_before_any_work(tmp_path: Path) -> None:
    """Intake knows the columns of the steps that name them; a plain distilabel step says its `inputs`
    only once built, so the pipeline checks them (require_source_columns), in one line."""
    from factory.core.errors import UserError

    source = tmp_path / "rows.jsonl"
    source.write_text('{"question": "How?"}\n')
    data = yaml.safe_load(canned_recipe(tmp_path).read_text())
    data["source"] = {"kind": "file", "path": str(source)}
    data["stages"] = [{"name": "chatty", "step": "tests.support.steps_for_tests:ChattyStep"}]
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(
        UserError, match=r"rows.jsonl: source has no column 'prompt' \(needed by stage 'chatty'\)"
    ):
        run_recipe(load_recipe(str(path)), tmp_path / "out", allow_import_steps=True)
