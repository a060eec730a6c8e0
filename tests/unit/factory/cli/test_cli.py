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


def test_boolean_options_are_flags_in_help_and_a_value_after_one_is_a_plain_error() -> None:
    for command in (["run"], ["publish"], ["eval", "c2"], ["eval", "harm"], ["inspect"]):
        proc = cli(*command, "--help")
        assert proc.returncode == 0 and "<bool>" not in proc.stdout, proc.stdout
    assert "  --public  " in cli("publish", "--help").stdout
    proc = cli("publish", "out/x", "--repo", "a/b", "--public", "true")
    assert proc.returncode == 2
    # one line, like every user error (see tests/unit/factory/cli/test_bad_input.py), not a box
    assert proc.stderr.strip().endswith("publish: Got unexpected extra argument(s) (true)")
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_train_set_help_speaks_of_the_training_config() -> None:
    help_text = " ".join(cli("train", "--help").stdout.split())
    assert "--set <key.path=value> Override a training-config value" in help_text
    assert "recipe value" not in help_text


def test_help_shows_the_settings_defaults_with_readable_value_names() -> None:
    c2 = " ".join(cli("eval", "c2", "--help").stdout.split())
    assert "--model <model> bundled | a model or LoRA-adapter folder" in c2
    assert "--rows <int range> Rows to use" in c2 and "[default: 500; x>=1]" in c2  # C2Settings.rows
    assert "[default: 10,20,30,40,50,60,70,80]" in c2  # C2Settings.ks
    assert "--max-new-tokens <int range> New tokens per generated answer or continuation. [default: 32;" in c2
    harm = " ".join(cli("eval", "harm", "--help").stdout.split())
    assert (
        "continuation. [default: 256;" in harm
        and "--temperature <float> Sampling temperature (0 = greedy). [default: 0.0]" in harm
    )
    train = " ".join(cli("train", "--help").stdout.split())
    assert (
        "Path, Hub id, or `bundled` (SmolLM2-135M-Instruct). [default: (the config's `model:`, else bundled)]"
        in train
    )
    for command in (["run"], ["plan"], ["train"], ["eval", "c2"], ["eval", "harm"]):
        assert "<list[str]>" not in cli(*command, "--help").stdout, command


def test_every_eval_option_has_help() -> None:
    import typer.main

    from factory.cli.app import app

    eval_group = typer.main.get_command(app).commands["eval"]  # type: ignore[attr-defined]
    for name, command in eval_group.commands.items():
        for param in command.params:
            assert getattr(param, "help", None), f"eval {name} {param.opts} has no help"


def test_a_table_wider_than_80_columns_is_printed_whole_into_a_pipe() -> None:
    proc = cli("plan", "c2syn-demo")  # stdout is a pipe
    header = next(line for line in proc.stdout.splitlines() if "LLM calls/row" in line)
    assert len(header) > 80
    for column in ("stage", "step", "backend", "LLM calls/row", "LLM calls (max)", "new tokens (max)"):
        assert column in header


def test_the_run_summary_is_whole_in_a_log(c2syn_demo_run: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    import factory.cli.app
    from factory.core.dataset_folder import read_manifest

    log = io.StringIO()  # not a terminal: rich would assume 80 columns
    monkeypatch.setattr(factory.cli.app, "console", Console(file=log))
    factory.cli.app._print_summary(read_manifest(c2syn_demo_run), Path("out/c2syn-demo"))
    header = next(line for line in log.getvalue().splitlines() if "quarantined" in line)
    assert len(header) > 80 and "LLM calls" in header and "gen tokens" in header
