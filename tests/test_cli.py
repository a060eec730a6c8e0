"""The CLI as a user runs it: exit codes, one-line errors, JSON Schemas, plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_schema_prints_valid_json_schema_for_records_and_recipe() -> None:
    for name in ("recipe", "manifest", "preference_pair", "c2_group", "safety_triple"):
        proc = cli("schema", name)
        assert proc.returncode == 0, proc.stderr
        schema = json.loads(proc.stdout)
        assert schema["type"] == "object" and schema["properties"]
    assert "stages" in json.loads(cli("schema", "recipe").stdout)["properties"]
    proc = cli("schema", "nope")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown schema 'nope'")


def test_plan_counts_llm_calls_from_the_source() -> None:
    proc = cli("plan", "c2syn-demo")
    assert proc.returncode == 0, proc.stderr
    assert "12 source rows" in proc.stdout
    assert "total: 60 LLM calls" in proc.stdout  # 12 rows x (SR + 4 continuations), an upper bound
    capped = cli("plan", "c2syn-demo", "--set", "stages.select.params.keep_first=3")
    assert "total: 15 LLM calls" in capped.stdout  # select lets at most 3 rows through


def test_recipes_lists_the_builtins() -> None:
    proc = cli("recipes")
    assert proc.returncode == 0 and "c2syn-demo" in proc.stdout and "c2syn " in proc.stdout


def test_check_exits_1_and_names_the_problem(tmp_path: Path) -> None:
    proc = cli("check", str(tmp_path))
    assert proc.returncode == 1
    assert "no manifest.json" in proc.stderr
    missing = cli("check", str(tmp_path / "nope"))  # a wrong path is a usage error, not a bad dataset
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder"


def test_help_is_fast_and_lists_commands() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("run", "validate", "plan", "check", "schema", "recipes", "publish", "train"):
        assert command in proc.stdout
