"""`safepref inspect DIR`: the HTML report of real demo runs, opened in real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.support.browser import Page, open_in_chromium

pytestmark = pytest.mark.slow


def inspect(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "factory", "inspect", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )


MARKUP_PROMPT = '<img src="http://example.invalid/p.png"><b>bold?</b>'


@pytest.fixture(scope="module")
def c2syn_page(c2syn_demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Page:
    """The report of a copy of the demo run whose first pair's prompt is HTML (it must stay text)."""
    folder = tmp_path_factory.mktemp("inspect") / "run"
    shutil.copytree(c2syn_demo_run, folder, ignore=shutil.ignore_patterns(".work"))
    shard = folder / "pairs" / "train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    prompts = table.column("prompt").to_pylist()
    prompts[0] = MARKUP_PROMPT
    i = table.schema.get_field_index("prompt")
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(prompts, pa.string())), shard)
    out = folder.parent / "c2syn.html"
    proc = inspect(str(folder), "--out", str(out), "--rows", "2")
    assert proc.returncode == 0, proc.stderr
    return open_in_chromium(out)


def test_the_page_is_self_contained_and_chromium_fetches_nothing(c2syn_page: Page) -> None:
    assert c2syn_page.requests == []
    assert "<svg" in c2syn_page.dom and "<script" not in c2syn_page.dom


def test_the_recording_proxy_sees_a_page_that_fetches(tmp_path: Path) -> None:
    page = tmp_path / "fetches.html"
    page.write_text('<html><body><img src="http://example.invalid/x.png">hi</body></html>')
    assert any("example.invalid" in r for r in open_in_chromium(page).requests)


def test_the_funnel_and_stage_tables_show_the_manifest_counts(c2syn_page: Page, c2syn_demo_run: Path) -> None:
    manifest = json.loads((c2syn_demo_run / "manifest.json").read_text())
    text = c2syn_page.visible_text
    counts = manifest["counts"]
    assert f"Rows: input {counts['input']}" in text and f"= output {counts['output']}" in text
    for heading in ("Filter funnel", "Quarantine reasons", "LLM calls and tokens per stage", "Configs"):
        assert heading in text
    for name, stage in manifest["stages"].items():
        assert name in text
        if stage["llm_calls"]:
            assert str(stage["completion_tokens"]) in text
    rules = {r["rule"] for r in pq.read_table(c2syn_demo_run / "filtered" / "rows.parquet").to_pylist()}
    for rule in rules:
        assert rule in text
    assert "generated tokens/s" in text


def test_each_llm_stage_reports_its_own_generation_time_and_speed(
    c2syn_page: Page, c2syn_demo_run: Path
) -> None:
    manifest = json.loads((c2syn_demo_run / "manifest.json").read_text())
    llm_stages = {name: st for name, st in manifest["stages"].items() if st["llm_calls"]}
    assert llm_stages and all(st["generation_seconds"] > 0 for st in llm_stages.values())
    # a figure (not "–") in the page's per-stage tokens/s column and in the card's, one per LLM stage
    rates = re.findall(r'<td class="num stage-rate">([^<]*)</td>', c2syn_page.dom)
    assert len(rates) == len(llm_stages) and all(float(r) > 0 for r in rates)
    card = (c2syn_demo_run / "README.md").read_text()
    assert "| generated tokens/s |" in card
    for name, st in llm_stages.items():
        row = next(line for line in card.splitlines() if line.startswith(f"| {name} | `{st['step']}` |"))
        assert float(row.split("|")[-2].replace(",", "")) > 0


def test_each_config_has_length_histograms_and_the_groups_their_cut_positions(
    c2syn_page: Page, c2syn_demo_run: Path
) -> None:
    text = c2syn_page.visible_text
    manifest = json.loads((c2syn_demo_run / "manifest.json").read_text())
    pairs = manifest["configs"]["pairs"]["splits"]["train"]["num_rows"]
    groups = manifest["configs"]["groups"]["splits"]["train"]["num_rows"]
    for column in ("prompt", "chosen", "rejected"):
        assert f"pairs.{column}: characters (n={pairs} rows)" in text
    assert f"cut position in the full harmful response (n={groups} groups, {4 * groups} cuts)" in text
    assert "toxic-span share" not in text  # a C²-Syn run has no PT-ALIGN section


def test_sample_rows_are_collapsed_behind_a_content_warning(c2syn_page: Page, c2syn_demo_run: Path) -> None:
    first_pair = pq.read_table(c2syn_demo_run / "pairs").to_pylist()[0]
    rejected = " ".join(first_pair["rejected"].split())[:60]
    assert rejected in c2syn_page.collapsed_text
    assert rejected not in c2syn_page.visible_text
    assert "Content warning — pairs row 0 may hold harmful text" in c2syn_page.visible_text
    assert "pairs row 2" not in c2syn_page.dom  # --rows 2
    assert c2syn_page.closed_details == 2 * 3  # 2 rows of each of the 3 configs


def test_dataset_text_is_escaped_not_rendered_as_markup(c2syn_page: Page) -> None:
    assert "<b>bold?</b>" in c2syn_page.collapsed_text  # shown as text, not as an element
    assert c2syn_page.requests == []  # so its <img> was never loaded


def test_the_ptalign_page_shows_the_toxic_span_share(ptalign_demo_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ptalign.html"
    assert inspect(str(ptalign_demo_run), "--out", str(out)).returncode == 0
    page = open_in_chromium(out)
    triples = pq.read_table(ptalign_demo_run / "triples").to_pylist()
    with_spans = sum(1 for t in triples if t["toxic_spans"])
    assert f"{with_spans} of {len(triples)} triples mark at least one toxic span" in page.visible_text
    assert f"share of the toxic response inside marked spans (n={len(triples)} triples)" in page.visible_text
    assert "cut position" not in page.visible_text
    assert page.requests == []


def test_a_run_that_kept_no_row_gets_a_report_with_empty_configs(tmp_path: Path) -> None:
    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe

    out = tmp_path / "run"  # every row filtered at select: no LLM call, every config empty
    run_recipe(load_recipe("c2syn-demo", ["stages.select.params.min_words=100000"], 3), out)
    assert inspect(str(out)).returncode == 0
    page = open_in_chromium(out / "report.html")
    assert "Rows: input 3 = output 0 + filtered 3 + quarantined 0" in page.visible_text
    assert page.visible_text.count("This config has no rows.") == 3
    assert "No stage called an LLM." in page.visible_text
    assert page.closed_details == 0 and page.requests == []


def test_a_folder_that_is_not_a_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = inspect(str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path}: not a safepref dataset folder (no manifest.json)"
    missing = inspect(str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder"
