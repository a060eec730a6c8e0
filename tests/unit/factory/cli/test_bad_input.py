"""Bad input of every kind ends in one clear line and the documented exit code, never a traceback.

Each case runs the real `safepref` entry point (`factory.cli.app.main`) in this process: no LLM is loaded,
every error here is found before any row reaches a model.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from factory.cli.app import main
from tests.conftest import REPO
from tests.support.hub_fixtures import build_dataset_folder

DEMO_TEXT = (REPO / "recipes" / "c2syn-demo.yaml").read_text()
DEMO = yaml.safe_load(DEMO_TEXT)
TOKEN = "sk-live-4f9a2b7c"  # a made-up secret: it must never be echoed

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def safepref(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["safepref", *args])
        with pytest.raises(SystemExit) as ended:
            main()
        out, err = capsys.readouterr()
        return int(ended.value.code or 0), out, err

    return invoke


def one_line(err: str) -> str:
    """The whole of stderr, which must be exactly one `error:` line."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def demo_with(tmp_path: Path, **top: object) -> Path:
    data = yaml.safe_load(DEMO_TEXT)
    data.update(top)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- the recipe file itself ------------------------------------------------------------------------


def test_a_binary_recipe_file(safepref: Cli, tmp_path: Path) -> None:
    path = tmp_path / "image.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    code, _, err = safepref("validate", str(path))
    assert code == 2 and one_line(err) == f"error: {path}: not a UTF-8 text file (byte 0)"


def test_a_1kb_alias_bomb_fails_fast(safepref: Cli, tmp_path: Path) -> None:
    levels = "abcdefghi"
    lines = [f'{levels[0]}: &{levels[0]} ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip(levels, levels[1:], strict=False):
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1024
    code, _, err = safepref("validate", str(path))  # 9^9 values once expanded
    assert code == 2 and "expands to more than 1,000,000 values" in one_line(err)


def test_an_oversized_recipe_file(safepref: Cli, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(DEMO_TEXT + "#" * (4 * 1024 * 1024))
    code, _, err = safepref("validate", str(path))
    assert code == 2 and "the limit is 4,194,304" in one_line(err)


def test_a_duplicate_key_is_named_with_its_line(safepref: Cli, tmp_path: Path) -> None:
    path = tmp_path / "dupe.yaml"
    text = DEMO_TEXT.replace("seed: 42\n", "seed: 42\nseed: 7\n")
    path.write_text(text)
    line = text.splitlines().index("seed: 7") + 1
    code, _, err = safepref("validate", str(path))
    assert code == 2 and one_line(err) == f"error: {path}: line {line}: invalid YAML: duplicate key 'seed'"


def test_control_and_bidi_characters_are_escaped_in_errors(safepref: Cli, tmp_path: Path) -> None:
    name = "report\u202eymal.exe\nerror: forged line.yaml"  # shows as report...exe.yaml, on two lines
    code, _, err = safepref("validate", str(tmp_path / name))
    line = one_line(err)
    assert code == 2 and "report\\u202eymal.exe\\u000aerror: forged line.yaml" in line
    assert "\u202e" not in line


# -- what no row can fix: validate rejects what run rejects ----------------------------------------


def test_credentials_in_base_url_are_refused_without_echoing_them(safepref: Cli) -> None:
    url = f"http://user:{TOKEN}@127.0.0.1:8000/v1"
    overrides = ["--set", "backends.local.kind=openai", "--set", f"backends.local.base_url={url}"]
    code, out, err = safepref("validate", "c2syn-demo", *overrides)
    assert code == 2 and "base_url must not embed credentials" in one_line(err)
    assert TOKEN not in out + err


def test_a_query_in_base_url_is_refused_without_echoing_it(safepref: Cli) -> None:
    url = f"http://127.0.0.1:8000/v1?api_key={TOKEN}"
    overrides = ["--set", "backends.local.kind=openai", "--set", f"backends.local.base_url={url}"]
    code, out, err = safepref("validate", "c2syn-demo", *overrides)
    assert code == 2 and "base_url must not carry a query" in one_line(err)
    assert TOKEN not in out + err


def test_a_non_http_base_url(safepref: Cli) -> None:
    overrides = ["--set", "backends.local.kind=openai", "--set", "backends.local.base_url=ftp://127.0.0.1/v1"]
    code, _, err = safepref("validate", "c2syn-demo", *overrides)
    assert code == 2 and "must be an http:// or https:// URL" in one_line(err)


def test_a_template_syntax_error(safepref: Cli, tmp_path: Path) -> None:
    (tmp_path / "judge.jinja").write_text("Is this safe?\n{% if response %}\n{{ response }\n")
    safety = {
        "name": "safety",
        "step": "c2syn.safety_check",
        "backend": "local",
        "params": {"judge": "llm", "judge_template": "judge.jinja"},
    }
    stages = DEMO["stages"][:3] + [safety] + DEMO["stages"][3:]
    code, _, err = safepref("validate", str(demo_with(tmp_path, stages=stages)))
    assert code == 2 and one_line(err).startswith("error: template judge.jinja: line 3: ")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "stages.generate.params.generation.temperature=0.7",  # generate samples, check decodes greedily
            "error: backends.local: stage 'check' (judge) samples with temperature=0.0 but generate.generation "
            "with 0.7: transformers serve applies one sampling configuration per server",
        ),
        (
            "backends.local.generation.repetition_penalty=1.2",
            "error: backends.local: generate.generation asks for repetition_penalty=1.2, which transformers "
            "serve drops under continuous batching",
        ),
    ],
)
def test_validate_refuses_sampling_a_transformers_server_cannot_serve(
    safepref: Cli, tmp_path: Path, setting: str, message: str
) -> None:
    check = {"name": "check", "step": "c2syn.safety_check", "backend": "local", "params": {"judge": "llm"}}
    stages = DEMO["stages"][:3] + [check] + DEMO["stages"][3:]
    code, _, err = safepref("validate", str(demo_with(tmp_path, stages=stages)), "--set", setting)
    assert code == 2 and one_line(err).startswith(message)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_model_folder_that_does_not_exist(safepref: Cli, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no-such-model"
    out = ["--out", str(tmp_path / "out")] if command == "run" else []
    code, _, err = safepref(command, "c2syn-demo", "--set", f"backends.local.model={missing}", *out)
    assert code == 2 and one_line(err) == f"error: backends.local.model: folder '{missing}' does not exist"


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_validate_with_a_missing_or_folder_source(safepref: Cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "rows.jsonl"
    if kind == "folder":
        path.mkdir()
    code, _, err = safepref(
        "validate", "c2syn-demo", "--set", "source.kind=file", "--set", f"source.path={path}"
    )
    expected = "is a folder, not a file" if kind == "folder" else "not found"
    assert code == 2 and one_line(err) == f"error: {path}: source file {expected}"


def test_validate_reads_a_local_source_as_run_does(safepref: Cli, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "How?", "response_0": "a", "response_1": "b", "is_response_0_safe": false}\n')
    code, _, err = safepref(
        "validate", "c2syn-demo", "--set", "source.kind=file", "--set", f"source.path={path}"
    )
    expected = "source has no column 'is_response_1_safe' (needed by stage 'select')"
    assert code == 2 and one_line(err).startswith(f"error: {path}: {expected}")


def test_an_import_step_that_is_not_a_class(safepref: Cli, tmp_path: Path) -> None:
    stages = [*DEMO["stages"], {"name": "oops", "step": "json:dumps"}]
    path = demo_with(tmp_path, stages=stages)
    code, _, err = safepref("run", str(path), "--allow-import-steps", "--out", str(tmp_path / "out"))
    assert (
        code == 2 and one_line(err) == "error: step 'json:dumps' is a function, not a distilabel Step class"
    )


# -- source files ------------------------------------------------------------------------------------

BAD_SOURCES = [
    (
        "rows.jsonl",
        "latin-1 jsonl",
        '{"prompt": "caf\xe9"}\n'.encode("latin-1"),
        "line 1: not UTF-8 text (byte 15)",
    ),
    ("rows.csv", "latin-1 csv", "prompt\ncaf\xe9\n".encode("latin-1"), "line 2: not UTF-8 text (byte 10)"),
    ("rows.json", "invalid json", b'[{"prompt": "a"},', "line 1: invalid JSON"),
    ("rows.json", "json list of strings", b'["a", "b"]', "a .json source must hold a list of objects"),
    ("rows.parquet", "truncated parquet", b"PAR1\x15\x04\x15\x00", "not a readable parquet file"),
    (
        "rows.jsonl",
        "an internal column name",
        json.dumps({"prompt": "hi", "_sp_usage": '{"generate": {"calls": 1000000}}'}).encode(),
        "row 0: column '_sp_usage' uses the prefix `_sp_`",
    ),
]


@pytest.mark.parametrize(
    ("name", "case", "content", "expected"), BAD_SOURCES, ids=[c[1] for c in BAD_SOURCES]
)
def test_a_bad_source_file(
    safepref: Cli, tmp_path: Path, name: str, case: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, _, err = safepref("plan", "c2syn-demo", "--set", "source.kind=file", "--set", f"source.path={path}")
    assert code == 2 and one_line(err).startswith(f"error: {path}: {expected}")


# -- damaged dataset folders -------------------------------------------------------------------------


@pytest.fixture
def truncated_folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = build_dataset_folder(tmp_path / "ds")
    shard = next((folder / "pairs").glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return folder, shard


def test_check_names_a_truncated_shard(safepref: Cli, truncated_folder: tuple[Path, Path]) -> None:
    folder, shard = truncated_folder
    code, _, err = safepref("check", str(folder))
    assert code == 1 and "Traceback" not in err
    assert f"{folder}: {shard}: not a readable parquet file" in err


def test_publish_refuses_a_truncated_shard(safepref: Cli, truncated_folder: tuple[Path, Path]) -> None:
    folder, shard = truncated_folder
    code, _, err = safepref("publish", str(folder), "--repo", "alice/tiny")
    assert code == 2 and f"{shard}: not a readable parquet file" in one_line(err)


def test_train_refuses_a_truncated_shard(
    safepref: Cli, truncated_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, shard = truncated_folder
    code, _, err = safepref("train", "dpo-demo", "--dataset", str(folder), "--out", str(tmp_path / "model"))
    assert code == 2 and f"{shard}: not a readable parquet file" in one_line(err)


def test_a_parquet_source_written_by_pyarrow_is_still_read(safepref: Cli, tmp_path: Path) -> None:
    """The guard against damaged parquet leaves good files alone."""
    rows = [json.loads(line) for line in (REPO / "recipes/data/c2syn_demo.jsonl").read_text().splitlines()]
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    code, out, _ = safepref("plan", "c2syn-demo", "--set", "source.kind=file", "--set", f"source.path={path}")
    assert code == 0 and f"{len(rows)} source rows" in out


# -- safepref eval: --model / --judge values -----------------------------------------------------------

BAD_ENDPOINTS = [
    (f"openai:https://user:{TOKEN}@127.0.0.1:8000/v1@m", "must not embed credentials"),
    (f"openai:http://127.0.0.1:8000/v1?key={TOKEN}@m", "must not carry a query or fragment"),
    (f"openai:https://user:{TOKEN}@127.0.0.1/v1", "port that is not a number"),  # no @MODEL
    ("openai:localhost:8000/v1@m", "must be an http:// or https:// URL"),
]


@pytest.mark.parametrize("command", ["c2", "harm"])
@pytest.mark.parametrize("option", ["--model", "--judge"])
@pytest.mark.parametrize(
    ("spec", "problem"), BAD_ENDPOINTS, ids=["userinfo", "query", "no name", "no scheme"]
)
def test_a_bad_openai_endpoint_is_one_line_that_keeps_the_token_out_of_output_and_files(
    safepref: Cli, tmp_path: Path, command: str, option: str, spec: str, problem: str
) -> None:
    out = tmp_path / "eval"
    model = spec if option == "--model" else "bundled"
    code, stdout, err = safepref("eval", command, "--model", model, option, spec, "--out", str(out))
    line = one_line(err)
    assert code == 2 and line.startswith(f"error: {option} openai:") and problem in line
    assert TOKEN not in stdout + err
    assert all(TOKEN not in f.read_text(errors="replace") for f in out.rglob("*") if f.is_file())


def test_an_endpoint_key_from_the_environment_is_never_written(
    safepref: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.held_server import HeldServer

    monkeypatch.setenv("OPENAI_API_KEY", TOKEN)
    out = tmp_path / "eval"
    with HeldServer() as server:
        code, stdout, err = safepref(
            "eval", "harm", "--model", f"openai:{server.url}@m", "--rows", "2", "--out", str(out)
        )
    assert code == 0, err
    files = [f for f in out.rglob("*") if f.is_file()]
    assert {"report.json", "settings.json", "answers.jsonl"} <= {f.name for f in files}
    assert json.loads((out / "report.json").read_text())["models"][0]["model"]["endpoint"] == server.url
    assert TOKEN not in stdout + err
    assert all(TOKEN.encode() not in f.read_bytes() for f in files)


EVAL_SETTINGS = [
    (
        ("--server", "vllm", "--device", "cuda:1"),
        "--device applies to --server transformers; vllm serve has no",
    ),
    (
        ("--server", "sglang", "--device", "npu"),
        "for SGLang's own device type pass --server-arg=--device=TYPE",
    ),
    (("--concurrency", "5000"), "--concurrency 5000: use 1 to 1024"),
]


@pytest.mark.parametrize("command", ["c2", "harm"])
@pytest.mark.parametrize(
    ("args", "expected"), EVAL_SETTINGS, ids=["vllm device", "sglang device", "concurrency"]
)
def test_eval_settings_a_server_would_drop_or_refuse_are_one_line_before_any_work(
    safepref: Cli, tmp_path: Path, command: str, args: tuple[str, ...], expected: str
) -> None:
    out = tmp_path / "eval"
    code, _, err = safepref("eval", command, "--model", "bundled", *args, "--out", str(out))
    assert code == 2 and expected in one_line(err) and not out.exists()


# -- command-line usage ------------------------------------------------------------------------------

USAGE = [
    (("run", "c2syn-demo", "--limit", "0"), "Invalid value for '--limit'"),
    (("eval", "harm", "--model", "bundled", "--out", "x", "--rows", "0"), "Invalid value for '--rows'"),
    (("eval", "c2", "--out", "x"), "Missing option '--model'"),
]


@pytest.mark.parametrize(("args", "expected"), USAGE, ids=["limit 0", "rows 0", "no --model"])
def test_usage_errors_are_one_line_not_a_box(safepref: Cli, args: tuple[str, ...], expected: str) -> None:
    code, out, err = safepref(*args)
    assert code == 2 and expected in one_line(err) and "╭" not in out + err


def test_publish_public_without_a_terminal_is_not_confirmed(safepref: Cli, tmp_path: Path) -> None:
    folder = build_dataset_folder(tmp_path / "ds")
    code, out, err = safepref("publish", str(folder), "--repo", "alice/open", "--public")
    assert code == 2 and "publicly was not confirmed (pass --yes" in one_line(err)
    assert "Aborted" not in out + err


def test_a_failing_hub_gives_one_line_not_its_retry_warnings(
    hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.support import hub_server as hs

    hub.server.inject(hs.RESOLVE_HEAD, 503, times=2)  # retried by huggingface_hub, which logs each retry
    monkeypatch.setattr(sys, "argv", ["safepref", "train", "dpo-demo", "--dataset", "alice/none"])
    with pytest.raises(SystemExit) as ended:
        main()
    err = capfd.readouterr().err
    assert ended.value.code == 2
    assert one_line(err).startswith("error: dataset alice/none: no such folder, and manifest.json could not")
    assert hs.RESOLVE_HEAD in hub.server.routes_hit()
