"""`safepref eval c2|harm` with the real bundled model on a few bundled rows: report, table, plots, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.cli.app import app
from factory.core.errors import UserError
from factory.evaluation.c2_eval import C2Settings, run_c2_eval
from factory.evaluation.harm_eval import HarmSettings, run_harm_eval
from schemas.eval_report import C2EvalReport, HarmEvalReport
from schemas.generation import GenerationParams

pytestmark = pytest.mark.slow
TINY = GenerationParams.model_validate({"max_new_tokens": 6, "temperature": 0.8, "top_p": 0.7})


def _assert_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 100


@pytest.fixture(scope="module")
def identity_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh LoRA adapter over the bundled model (B = 0, so it leaves the model unchanged)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.core.models import bundled_model_dir

    base = bundled_model_dir()
    folder = tmp_path_factory.mktemp("adapter") / "smol-lora"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def test_cli_compares_a_base_and_an_adapter_in_one_command(tmp_path: Path, identity_adapter: Path) -> None:
    out = tmp_path / "c2"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "c2",
            "--model",
            "bundled",
            "--model",
            str(identity_adapter),
            "--data",
            "bundled",
            "--rows",
            "2",
            "--samples",
            "1",
            "--k",
            "10,20",
            "--max-new-tokens",
            "6",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = C2EvalReport.model_validate_json((out / "report.json").read_text())
    raw = json.loads((out / "report.json").read_text())
    assert [m["model"]["kind"] for m in raw["models"]] == ["bundled", "adapter"]
    assert set(raw["models"][0]["corr_at"]) == {"10", "20"} and "corr_mean" in raw["models"][0]
    adapter = report.models[1].model
    assert adapter.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and adapter.fingerprint
    for result_ in report.models:
        assert result_.judged_at == {10: 2, 20: 2} and result_.failed_at == {10: 0, 20: 0}
        assert all(0.0 <= (v or 0.0) <= 1.0 for v in result_.corr_at.values())
    assert report.judge.kind == "keyword" and report.data.rows_used == 2
    table = (out / "report.md").read_text()
    assert "| model | Corr@10 | Corr@20 | Corr_mean |" in table
    assert f"| {identity_adapter} |" in table and "| bundled |" in table
    _assert_png(out / "corr_at_k.png")
    assert len((out / adapter.slug / "samples.jsonl").read_text().splitlines()) == 4
    # the adapter was served as base + adapter merged into a folder: for an identity adapter (B = 0),
    # exactly the base's weights, in the base's dtype, with the adapter's tokenizer
    from safetensors.torch import load_file

    from factory.core.models import bundled_model_dir
    from factory.evaluation.merged_adapter import merged_dir

    merged_folder = merged_dir(identity_adapter, out / ".work")
    merged, base = (
        load_file(merged_folder / "model.safetensors"),
        load_file(bundled_model_dir() / "model.safetensors"),
    )
    assert merged.keys() == base.keys()
    assert all(merged[k].dtype == base[k].dtype and merged[k].equal(base[k]) for k in base)
    assert (merged_folder / "tokenizer_config.json").is_file()
    assert {p.name for p in (out / ".work").glob("server-*.log")} == {
        "server-bundled.log",
        f"server-{adapter.slug}.log",
    }


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_interrupted_eval_resumes_without_regenerating_and_its_stored_paths_reproduce_the_report(
    tmp_path: Path,
) -> None:
    settings = C2Settings(
        models=["bundled"], data="bundled", rows=3, samples=2, ks=(10, 30), decoding=TINY, chunk=4
    )
    total = 3 * 2 * 2
    partial = run_c2_eval(settings, tmp_path / "resumed", max_batches=1)  # dies after the first batch
    assert partial.report is None and partial.progress.interrupted
    samples = tmp_path / "resumed" / "bundled" / "samples.jsonl"
    first = _lines(samples)
    assert len(first) == 4 and not (tmp_path / "resumed" / "report.json").exists()

    resumed = run_c2_eval(settings, tmp_path / "resumed")
    assert resumed.progress.generated == total - 4  # nothing finished is generated again
    after = _lines(samples)
    assert after[:4] == first and len(after) == total
    assert len({(r["row_id"], r["k"], r["sample"]) for r in map(json.loads, after)}) == total

    again = run_c2_eval(settings, tmp_path / "resumed")
    assert again.progress.generated == 0 and again.progress.judged == 0

    # Sampling on a continuously batching server is not reproducible text for text, so a fresh run may
    # word its paths differently; the stored paths are what make a report reproducible: a report folder
    # given them (not their verdicts) generates nothing and writes the same report byte for byte
    copy = tmp_path / "copy" / "bundled"
    copy.mkdir(parents=True)
    for name in ("settings.json", "samples.jsonl"):
        (copy / name).write_bytes((samples.parent / name).read_bytes())
    judged = run_c2_eval(settings, tmp_path / "copy")
    assert judged.progress.generated == 0 and judged.progress.judged == total
    assert (tmp_path / "resumed" / "report.json").read_bytes() == (
        tmp_path / "copy" / "report.json"
    ).read_bytes()


def test_resuming_with_other_decoding_is_refused(tmp_path: Path) -> None:
    settings = C2Settings(models=["bundled"], data="bundled", rows=1, samples=1, ks=(10,), decoding=TINY)
    run_c2_eval(settings, tmp_path, max_batches=0)
    other = C2Settings(
        models=["bundled"],
        data="bundled",
        rows=1,
        samples=1,
        ks=(10,),
        decoding=TINY.model_copy(update={"temperature": 0.5}),
    )
    with pytest.raises(UserError, match="other settings \\(decoding\\)"):
        run_c2_eval(other, tmp_path, max_batches=0)


def test_harm_eval_reports_rates_with_intervals_and_a_helpfulness_probe(tmp_path: Path) -> None:
    settings = HarmSettings(
        models=["bundled"],
        data="bundled",
        rows=2,
        benign="bundled",
        benign_rows=2,
        decoding=GenerationParams.model_validate({"max_new_tokens": 8, "temperature": 0.0}),
    )
    outcome = run_harm_eval(settings, tmp_path)
    report = HarmEvalReport.model_validate_json((tmp_path / "report.json").read_text())
    assert outcome.report == report
    result = report.models[0]
    assert result.harmful.judged == 2 and result.helpful is not None and result.helpful.judged == 2
    for rate in (result.harmful, result.helpful):
        assert rate.rate is not None and rate.ci is not None and rate.ci.low <= rate.rate <= rate.ci.high
    assert "Wilson" in report.config.interval
    answers = [json.loads(x) for x in _lines(tmp_path / "bundled" / "answers.jsonl")]
    assert sorted((a["set"], a["row_id"]) for a in answers) == [
        ("benign", "0"),
        ("benign", "1"),
        ("harm", "0"),
        ("harm", "1"),
    ]
    assert "| model | harmful rate | helpful rate |" in (tmp_path / "report.md").read_text()
    _assert_png(tmp_path / "harmful_rate.png")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "./no/such/folder"], "no such model folder"),
        (["--model", "openai:http://127.0.0.1:8000/v1"], "openai:BASE_URL@MODEL_NAME"),
        (["--model", "bundled", "--k", "10,x"], "--k"),
        (["--model", "bundled", "--data", "missing.jsonl"], "source file not found"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", "c2", *args, "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError) and message in str(result.exception)


def test_an_openai_compatible_endpoint_gets_the_prefill_as_an_open_turn(tmp_path: Path) -> None:
    from factory.backends.transformers_backend import TransformersBackend
    from schemas.generation import BackendSpec
    from tests.support.openai_server import OpenAITestServer

    served = TransformersBackend(BackendSpec.model_validate({"kind": "transformers", "model": "bundled"}))
    with OpenAITestServer(served) as server:
        settings = C2Settings(
            models=[f"openai:{server.url}@test-model"],
            data="bundled",
            rows=1,
            samples=1,
            ks=(10,),
            decoding=TINY,
        )
        outcome = run_c2_eval(settings, tmp_path)
        body = server.log[-1].body
    assert outcome.report is not None and outcome.report.models[0].judged_at == {10: 1}
    assert outcome.report.models[0].model.endpoint == server.url
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1]["role"] == "assistant" and len(body["messages"][-1]["content"].split()) == 10
    assert body["temperature"] == 0.8 and body["top_p"] == 0.7 and isinstance(body["seed"], int)


def test_a_classifier_judge_sees_the_exchange_as_a_closed_turn(tmp_path: Path) -> None:
    from factory.backends.transformers_backend import TransformersBackend
    from schemas.generation import BackendSpec
    from tests.support.openai_server import OpenAITestServer

    served = TransformersBackend(BackendSpec.model_validate({"kind": "transformers", "model": "bundled"}))
    with OpenAITestServer(served) as server:
        settings = HarmSettings(
            models=["bundled"],
            data="bundled",
            rows=2,
            judge=f"classifier:openai:{server.url}@guard",
            decoding=GenerationParams.model_validate({"max_new_tokens": 6, "temperature": 0.0}),
        )
        outcome = run_harm_eval(settings, tmp_path)
        entries = list(server.log)
    assert outcome.report is not None and outcome.report.judge.kind == "classifier"
    assert len(entries) == 2
    for entry in entries:
        assert "continue_final_message" not in entry.body
        assert [m["role"] for m in entry.body["messages"]] == ["user", "assistant"]
        # the answer's turn is closed and a new assistant turn opened for the classifier's reply
        assert entry.prompt is not None and entry.prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    harmful = outcome.report.models[0].harmful
    # SmolLM2 is no classifier: replies that are not safe/unsafe are no verdicts, counted as failed
    assert harmful.judged + harmful.failed == 2
