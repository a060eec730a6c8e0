"""Bad recipes give one clear line naming the file and field, exit 2, and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DEMO = yaml.safe_load((REPO / "recipes" / "c2syn-demo.yaml").read_text())


def _variant(tmp_path: Path, mutate: object) -> Path:
    data = yaml.safe_load(yaml.safe_dump(DEMO))
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


CASES = [
    ("unknown top-level field", lambda d: d.update(colour="red"), "colour: unknown field"),
    ("unknown step", lambda d: d["stages"][0].update(step="c2syn.nope"), "unknown step 'c2syn.nope'"),
    (
        "wrong param type",
        lambda d: d["stages"][0].update(params={"min_words": "many"}),
        "stages[select].params.min_words",
    ),
    (
        "unknown param",
        lambda d: d["stages"][1].update(params={"mood": "x"}),
        "stages[truncate].params.mood: unknown field",  # worded as an unknown top-level field
    ),
    ("bad enum", lambda d: d["stages"][1].update(params={"mode": "loose"}), "params.mode"),
    ("missing backend ref", lambda d: d["stages"][2].update(backend="gpu"), "uses backend 'gpu'"),
    (
        "llm step without backend",
        lambda d: d["stages"][2].pop("backend"),
        "calls an LLM with these params: set `backend`",
    ),
    ("duplicate stage", lambda d: d["stages"][1].update(name="select"), "stage names must be unique"),
    ("unknown exporter", lambda d: d["outputs"][0].update(exporter="x.y"), "unknown exporter 'x.y'"),
    ("missing licence", lambda d: d.pop("license"), "license: Field required"),
    ("openai without base_url", lambda d: d["backends"]["local"].update(kind="openai"), "needs `base_url`"),
    ("two defaults", lambda d: d["outputs"][1].update(default=True), "only one output may be"),
    (
        "negative tokens",
        lambda d: d["backends"]["local"]["generation"].update(max_new_tokens=-1),
        "max_new_tokens",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_recipe_gives_one_line_and_exit_2(
    tmp_path: Path, name: str, mutate: object, expected: str
) -> None:
    path = _variant(tmp_path, mutate)
    proc = _cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nstages: [\n  - a: b\n")
    proc = _cli("validate", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}: line ")
    assert "invalid YAML" in proc.stderr


def test_missing_recipe_file_and_unknown_builtin(tmp_path: Path) -> None:
    proc = _cli("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "recipe file not found" in proc.stderr
    proc = _cli("run", "no-such-recipe")
    assert proc.returncode == 2 and "built-ins: " in proc.stderr and "c2syn-demo" in proc.stderr


def test_source_missing_a_column_is_reported_before_any_generation(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "How?", "response_0": "a", "response_1": "b", "is_response_0_safe": false}\n')
    path = _variant(tmp_path, lambda d: d.update(source={"kind": "file", "path": str(data)}))
    proc = _cli("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "source has no column 'is_response_1_safe' (needed by stage 'select')" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_source_json_line_names_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "How?"}\n{not json\n')
    path = _variant(tmp_path, lambda d: d.update(source={"kind": "file", "path": str(data)}))
    proc = _cli("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"error: {data}: line 2: invalid JSON" in proc.stderr


def test_set_override_with_unknown_stage_is_a_user_error() -> None:
    proc = _cli("validate", "c2syn-demo", "--set", "stages.nope.params.mode=faithful")
    assert proc.returncode == 2 and "no list item named or numbered 'nope'" in proc.stderr


def test_set_override_changes_the_recipe() -> None:
    proc = _cli("validate", "c2syn-demo", "--set", "stages.truncate.params.mode=faithful")
    assert proc.returncode == 0, proc.stderr
    proc = _cli("validate", "c2syn-demo", "--set", "stages.truncate.params.mode=wrong")
    assert proc.returncode == 2 and "stages[truncate].params.mode" in proc.stderr


def test_import_path_step_needs_explicit_permission(tmp_path: Path) -> None:
    path = _variant(
        tmp_path, lambda d: d["stages"][2].update(step="tests.support.steps_for_tests:CannedGenerate")
    )
    proc = _cli("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "--allow-import-steps" in proc.stderr
