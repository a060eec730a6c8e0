"""The optional SR safety check: unsafe safe-responses are dropped (counted) or re-generated."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.unit.factory.engine.test_engine import DEMO, DEMO_ROWS


def _recipe(tmp_path: Path, check: dict[str, object], *, backend: bool = False) -> Path:
    data = yaml.safe_load(yaml.safe_dump(DEMO))
    data["stages"][2] = {
        "name": "generate",
        "step": "tests.support.steps_for_tests:CannedGenerate",
        "params": {"unsafe_sr_ids": ["0", "5"]},
    }
    stage: dict[str, object] = {"name": "check", "step": "c2syn.safety_check", "params": check}
    if backend:
        stage["backend"] = "local"
        data["backends"]["local"]["generation"]["max_new_tokens"] = 8
    else:
        data["backends"] = {}
    data["stages"].insert(3, stage)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_keyword_check_drops_groups_whose_sr_is_unsafe_and_counts_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_recipe(
        load_recipe(str(_recipe(tmp_path, {"judge": "keyword", "action": "drop"}))),
        out,
        allow_import_steps=True,
    )
    counts = result.manifest.counts
    assert counts.filtered["unsafe_safe_response"] == 2 and counts.output == 7
    assert result.manifest.stages["check"].filtered == 2
    filtered = {r["_sp_id"]: r["rule"] for r in pq.read_table(out / "filtered" / "rows.parquet").to_pylist()}
    assert filtered["0"] == filtered["5"] == "unsafe_safe_response"
    groups = pq.read_table(out / "groups").to_pylist()
    assert {"0", "5"}.isdisjoint(g["source_id"] for g in groups)


@pytest.mark.slow
def test_regenerate_asks_the_llm_again_only_for_unsafe_srs(tmp_path: Path) -> None:
    check = {"judge": "keyword", "action": "regenerate", "max_regenerations": 1}
    result = run_recipe(
        load_recipe(str(_recipe(tmp_path, check, backend=True))), tmp_path / "out", allow_import_steps=True
    )
    stats = result.manifest.stages["check"]
    assert stats.llm_calls == 2  # one re-generation for each of the two unsafe SRs, none for the others
    assert stats.events == {"sr_regenerated": 2}
    assert stats.rows_in == 9
    counts = result.manifest.counts
    assert counts.output + counts.filtered.get("unsafe_safe_response", 0) == 9
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["counts"] == counts.model_dump()


def test_safety_check_plan_counts_regenerations() -> None:
    from schemas.methods.c2syn import C2SafetyCheckParams

    assert C2SafetyCheckParams(judge="keyword", action="drop").llm_calls_per_row() == 0
    assert C2SafetyCheckParams(judge="llm", action="drop").llm_calls_per_row() == 1
    assert C2SafetyCheckParams(judge="llm", action="regenerate", max_regenerations=2).llm_calls_per_row() == 5


@pytest.mark.slow
def test_a_judge_template_beside_the_recipe_is_used_and_hashed(tmp_path: Path) -> None:
    import hashlib

    from factory.backends.transformers_backend import TransformersBackend
    from schemas.generation import BackendSpec
    from tests.support.openai_server import OpenAITestServer

    template = tmp_path / "my_judge.jinja"
    template.write_text(
        "MY-OWN-JUDGE. Request: {{ request }}\nReply: {{ response }}\nIs the reply safe? Answer yes or no."
    )
    check = {"judge": "llm", "action": "drop", "judge_template": "my_judge.jinja"}
    path = _recipe(tmp_path, check, backend=True)
    backend = TransformersBackend(BackendSpec(kind="transformers", model="bundled", batch_size=8))
    with OpenAITestServer(backend) as server:
        data = yaml.safe_load(path.read_text())
        data["backends"]["local"] = {
            "kind": "openai",
            "base_url": server.url,
            "model": "bundled",
            "generation": {"max_new_tokens": 4},
            "max_retries": 1,
        }
        path.write_text(yaml.safe_dump(data))
        # the judge call of row 2 is refused (a 400 is not retried): no verdict, so quarantined
        server.inject("status", times=1, status=400, match=json.dumps(DEMO_ROWS[2]["prompt"])[1:-1])
        # the judge answers row 4 with nothing, every time: a verdict (not `yes`), as the reference judge
        # reads an empty reply, so the group is dropped as unsafe, not quarantined
        server.inject("empty", times=10, match=json.dumps(DEMO_ROWS[4]["prompt"])[1:-1])
        result = run_recipe(load_recipe(str(path)), tmp_path / "out", allow_import_steps=True)
        bodies = [json.dumps(entry.body) for entry in server.log]
    backend.close()
    assert len(bodies) == 10 and all("MY-OWN-JUDGE" in b for b in bodies)  # per group, row 4 asked twice
    sha = hashlib.sha256(template.read_bytes()).hexdigest()
    assert result.manifest.inputs_sha256["template:my_judge.jinja"] == sha
    counts = result.manifest.counts
    assert counts.quarantined == {"check": 1}
    assert counts.output + counts.filtered.get("unsafe_safe_response", 0) == 8
    q = pq.read_table(tmp_path / "out" / "quarantine" / "rows.parquet").to_pylist()
    assert [r["_sp_id"] for r in q] == ["2"] and q[0]["reason"].startswith("SR judge failed: HTTP 400")
    assert q[0]["raw_output"]
    filtered = {
        r["_sp_id"]: r["rule"]
        for r in pq.read_table(tmp_path / "out" / "filtered" / "rows.parquet").to_pylist()
    }
    assert filtered["4"] == "unsafe_safe_response"


def test_validate_names_a_missing_prompt_template(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    path = _recipe(tmp_path, {"judge": "llm", "action": "drop", "judge_template": "nope.jinja"}, backend=True)
    proc = subprocess.run(
        [sys.executable, "-m", "factory", "validate", str(path)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path}: prompt template 'nope.jinja' not found"]
