"""Managed model servers: one `transformers serve`, `vllm serve` or SGLang process per backend and run.

The engine (main process) starts the server of every `kind: transformers` / `vllm` / `sglang` backend a
recipe uses (the evaluation runner does the same for its models and judges, `evaluation.serving`), waits until it answers a real completion (the model is loaded then), hands every stage the
same OpenAI-compatible client (`client_spec`) and stops the server when the run ends, fails or is
interrupted. The server runs in its own process group (a Ctrl-C in the terminal reaches the engine,
which stops the server in order) and dies with its parent (PR_SET_PDEATHSIG), so a SIGKILLed run leaves
no server behind.

Prompts are rendered here with the model's tokenizer and sent to /v1/completions
(`prefill_mode: completions`): `transformers serve` rejects vLLM's `continue_final_message`, and a
locally rendered prompt continues an open assistant turn the same way on every server.

`transformers serve --continuous-batching` (5.23) applies the sampling settings of its FIRST request
(temperature, top_p, top_k, repetition_penalty) to every later request; only max_new_tokens is per
request (stop strings are cut client-side). So preflight checks (`validate` and `run`) that every
stage on such a backend samples alike (`shared_sampling`), and the warm-up request sends those settings.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from factory.backends.openai_backend import extra_decoding, generation_config_field, generation_defaults
from factory.core.env import env_vars
from factory.core.errors import UserError
from factory.core.models import load_source, stage_decodings
from factory.core.parent_death import die_with_parent
from schemas.generation import (
    DEFAULT_KV_TOKENS_PER_REQUEST,
    DEFAULT_MAX_BATCH_TOKENS,
    BackendSpec,
    GenerationParams,
)
from schemas.recipe import Recipe

SERVERS_ENV = "SAFEPREF_SERVERS"  # JSON {server_key: base_url}: how stages in worker processes find them
SERVED_KINDS = frozenset({"transformers", "vllm", "sglang"})
_DEFAULT_LABELS = {
    "transformers": "transformers serve",
    "vllm": "vllm serve",
    "sglang": "sglang.launch_server",
}
_HOST = "127.0.0.1"
_STOP_GRACE_S = 20.0  # SIGTERM, then (after the server exits or this long) SIGKILL to the whole group
# transformers serve's KV cache page (tokens; its default 256). Requests share the pages of a common
# prompt prefix (a stage's template, a row's instruction), which 256-token pages rarely cover: pages of
# 32 cut the server's CPU time on ptalign-demo's requests by 30% (16: no better; 64: 25%) and on
# c2syn-demo's by half, and a request holds its length rounded up to 32 tokens, not to 256.
KV_PAGE_TOKENS = 32


@dataclass(frozen=True)
class _ServerFlags:
    """How one GPU server spells the settings vLLM and SGLang share (BackendSpec field -> flag)."""

    command: tuple[str, ...]
    model: str | None  # None: the model is the first positional argument
    tensor_parallel_size: str
    gpu_memory_utilization: str
    max_num_seqs: str
    max_batch_tokens: str
    tokenizer: str


_GPU_SERVER_FLAGS = {
    "vllm": _ServerFlags(
        command=("vllm", "serve"),
        model=None,
        tensor_parallel_size="--tensor-parallel-size",
        gpu_memory_utilization="--gpu-memory-utilization",
        max_num_seqs="--max-num-seqs",
        max_batch_tokens="--max-num-batched-tokens",
        tokenizer="--tokenizer",
    ),
    "sglang": _ServerFlags(
        command=(sys.executable, "-m", "sglang.launch_server"),
        model="--model-path",
        tensor_parallel_size="--tp-size",
        gpu_memory_utilization="--mem-fraction-static",
        max_num_seqs="--max-running-requests",
        max_batch_tokens="--chunked-prefill-size",
        tokenizer="--tokenizer-path",
    ),
}


class ServerError(UserError):
    """A managed server could not start or died: the system's failure, not the recipe's (exit 1)."""

    exit_code = 1


def server_key(spec: BackendSpec) -> str:
    """Backends with equal specs share one server (and one model copy)."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def model_source(spec: BackendSpec) -> str:
    """What the server loads: the bundled model's converted folder, a local folder, or a Hub id."""
    return load_source(spec.model)


def server_command(spec: BackendSpec, port: int) -> list[str]:
    """The command line that serves `spec` on 127.0.0.1:`port`."""
    source = model_source(spec)
    if spec.kind == "transformers":
        prefix = spec.server_command or [sys.executable, "-m", "transformers.cli.transformers", "serve"]
        # transformers serve names a revision as MODEL@REV; it sizes the KV cache from free memory
        # unless told (seen: 8.8 GB resident for the 135M demo model on a CPU), so bound it
        kv_tokens = spec.kv_cache_tokens or spec.max_concurrency * DEFAULT_KV_TOKENS_PER_REQUEST
        command = [
            *prefix,
            f"{source}@{spec.revision}" if spec.revision else source,
            "--continuous-batching",
            f"--cb-max-batch-tokens={spec.max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS}",
            f"--cb-block-size={KV_PAGE_TOKENS}",
            f"--cb-num-blocks={-(-kv_tokens // KV_PAGE_TOKENS)}",
            f"--dtype={spec.dtype}",
            "--log-level=warning",
        ]
        if spec.device:
            command.append(f"--device={spec.device}")
    else:
        flags = _GPU_SERVER_FLAGS[spec.kind]
        command = [*(spec.server_command or flags.command)]
        command += [f"{flags.model}={source}"] if flags.model else [source]
        command += [
            f"--dtype={spec.dtype}",
            f"{flags.tensor_parallel_size}={spec.tensor_parallel_size}",
            f"{flags.gpu_memory_utilization}={spec.gpu_memory_utilization}",
        ]
        if spec.max_num_seqs:
            command.append(f"{flags.max_num_seqs}={spec.max_num_seqs}")
        if spec.max_batch_tokens:
            command.append(f"{flags.max_batch_tokens}={spec.max_batch_tokens}")
        if spec.revision:  # refused with `model: bundled` (schemas.generation.BackendSpec)
            command.append(f"--revision={spec.revision}")
        if spec.tokenizer and spec.tokenizer != "bundled":
            command.append(f"{flags.tokenizer}={spec.tokenizer}")
    if spec.trust_remote_code:
        command.append("--trust-remote-code")
    return [*command, f"--host={_HOST}", f"--port={port}", *spec.server_args]


def client_spec(spec: BackendSpec, base_url: str | None = None) -> BackendSpec:
    """The OpenAI-compatible client of a managed server (other kinds unchanged): same model identity
    (cache keys, provenance), prompts rendered locally with the model's tokenizer, the server's own
    model name in requests. Without `base_url` it is what the request cache keys on."""
    if spec.kind not in SERVED_KINDS:
        return spec
    return spec.model_copy(
        update={
            "kind": "openai",
            "base_url": base_url,
            "prefill_mode": "completions",
            "tokenizer": spec.tokenizer or spec.model,
            "served_model_name": model_source(spec),
            "extra_decoding": "generation_config" if spec.kind == "transformers" else "fields",
            "server": spec.kind if spec.kind != "sglang" else "other",  # SGLang: no beam search asked
        }
    )


def served_spec(spec: BackendSpec) -> BackendSpec:
    """For a stage: the client of the server the engine started for `spec` (other kinds unchanged)."""
    if spec.kind not in SERVED_KINDS:
        return spec
    servers = json.loads(os.environ.get(SERVERS_ENV) or "{}")
    url = servers.get(server_key(spec))
    if url is None:
        raise RuntimeError(
            f"no managed server for this {spec.kind} backend: stages get one from the engine (run_recipe)"
        )
    return client_spec(spec, url)


_SAMPLING = ("temperature", "top_p", "top_k", "repetition_penalty")


def shared_sampling(recipe: Recipe, backend: str) -> GenerationParams:
    """The one sampling configuration all stages on `backend` use (its warm-up request carries it).

    A `transformers` server applies its first request's sampling to all: a second configuration on the
    same backend is a recipe error, named with its stage and role."""
    spec = recipe.backends[backend]
    stages = {s.name for s in recipe.stages if s.backend == backend}
    first: tuple[str, GenerationParams] | None = None
    for used in stage_decodings(recipe):
        if used.stage not in stages:
            continue
        if first is None:
            first = (f"{used.stage}.{used.role}", used.decoding)
            continue
        if spec.kind != "transformers":
            break
        differs = [f for f in _SAMPLING if getattr(used.decoding, f) != getattr(first[1], f)]
        if differs:
            field = differs[0]
            raise UserError(
                f"stage {used.stage!r} ({used.role}) samples with {field}={getattr(used.decoding, field)} "
                f"but {first[0]} with {getattr(first[1], field)}: transformers serve applies one sampling "
                "configuration per server; give these stages a backend of their own (its own server)",
                where=f"backends.{backend}",
            )
    sampling = spec.generation if first is None else first[1]
    if spec.kind == "transformers":
        _check_served_sampling(backend, first[0] if first else "generation", sampling)
    return sampling


def _check_served_sampling(backend: str, where: str, decoding: GenerationParams) -> None:
    if decoding.repetition_penalty not in (None, 1.0):  # its logits processor has no batched version
        raise UserError(
            f"{where} asks for repetition_penalty={decoding.repetition_penalty}, which transformers serve "
            "drops under continuous batching (transformers 5.23): unset it, or serve with kind vllm",
            where=f"backends.{backend}",
        )


def server_threads(spec: BackendSpec) -> int:
    """The CPU threads a managed server computes with: the backend's `threads`, else OMP_NUM_THREADS,
    else half the cores. torch's default (a thread per core) stalls when other processes hold the
    cores: seen on 2 busy cores, one answer in six minutes."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return spec.threads or (
        int(env) if env.isdigit() and int(env) > 0 else max(1, (os.cpu_count() or 2) // 2)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


class ManagedServer:
    """One server process for one backend: `with ManagedServer(name, spec, log) as server: server.url`.

    Start it from a thread that lives as long as the run (the main thread): the server is SIGKILLed
    when the starting thread ends. `stop()` is idempotent and also runs on errors and Ctrl-C.
    """

    def __init__(
        self,
        name: str,
        spec: BackendSpec,
        log_path: Path,
        sampling: GenerationParams | None = None,
        where: str | None = None,
    ) -> None:
        self.name, self.spec, self.log_path = name, spec, log_path
        self.where = (
            where or f"backends.{name}"
        )  # what its errors name (a recipe's backend, an eval's --model)
        self.sampling = sampling or spec.generation  # what the warm-up request asks for
        self.port = _free_port()
        self.url = f"http://{_HOST}:{self.port}/v1"
        self.command = server_command(spec, self.port)
        self.label = " ".join(spec.server_command[:2]) if spec.server_command else _DEFAULT_LABELS[spec.kind]
        self.process: subprocess.Popen[bytes] | None = None
        self._terminated = False  # SIGTERM sent to its group (sent once)
        self.started_at = 0.0  # time.monotonic() of start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(server_threads(self.spec))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        with self.log_path.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own group: a terminal's Ctrl-C reaches only the engine
                    # SIGKILLed when the thread that started it ends (the engine's main thread)
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),
                )
            except OSError as exc:
                raise UserError(
                    f"cannot start `{self.label}`: {exc.strerror or exc}; install the server "
                    "or set server_command",
                    where=self.where,
                ) from None

    def wait_ready(self) -> float:
        """Block until the server answers a one-token completion (so the model is loaded); the seconds
        since it was started.

        Polls /health, then sends the request, and gives up when the process exits (with the last line
        of its log) or after `startup_timeout_s`."""
        process = self.process  # stop() from another thread clears the attribute
        assert process is not None
        deadline = self.started_at + self.spec.startup_timeout_s
        request = client_spec(self.spec)
        body: dict[str, object] = {
            "model": request.served_model_name,
            "prompt": "Hello",
            "max_tokens": 1,
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
        }
        if request.extra_decoding == "generation_config":  # this first request pins the server's config
            defaults = generation_defaults(model_source(self.spec), self.spec.revision)
            body["generation_config"] = generation_config_field(defaults, self.sampling)
        else:
            body.update(extra_decoding(self.sampling))
        with httpx.Client(timeout=httpx.Timeout(self.spec.startup_timeout_s, connect=2.0)) as http:
            while True:
                try:
                    health = http.get(self.url.removesuffix("/v1") + "/health")
                    if health.status_code == 200:
                        answer = http.post(self.url + "/completions", json=body)
                        if answer.status_code == 200:
                            return time.monotonic() - self.started_at
                        self._fail(f"answered its first request with HTTP {answer.status_code}")
                except httpx.TransportError:
                    pass  # not listening yet (or just died: checked next)
                try:
                    code = process.wait(timeout=0.25)  # the poll interval, cut short by an exit
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        self._fail(f"was not ready after startup_timeout_s={self.spec.startup_timeout_s:g}")
                    continue
                self._fail(f"exited with code {code} before it was ready")

    def _fail(self, what: str) -> None:
        self.stop()
        raise ServerError(
            f"{self.label} of model {self.spec.model!r} {what}: {_last_line(self.log_path)} "
            f"(log: {self.log_path})",
            where=self.where,
        )

    def begin_stop(self) -> None:
        """SIGTERM the server's process group, once, without waiting (`stop()` waits)."""
        if self.process is not None and not self._terminated:
            self._terminated = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM the server's process group, give the server `_STOP_GRACE_S` to exit, then SIGKILL
        the whole group: vLLM's and SGLang's worker processes share it and may outlive the server
        (holding GPU memory). Returns once no process of the group runs."""
        process = self.process
        if process is None:
            return
        self.begin_stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _await_group_end(process.pid)
        self.process = None
        self._terminated = False

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _await_group_end(pgid: int) -> None:
    """Wait (up to `_STOP_GRACE_S`) until no process of the SIGKILLed group `pgid` runs; a zombie
    left for an ancestor to reap holds no memory and does not count."""
    deadline = time.monotonic() + _STOP_GRACE_S
    while time.monotonic() < deadline:
        members = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    members.append(proc)
        if not members:
            return
        time.sleep(0.05)


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip()[:300] if lines else "(empty log)"


def recipe_servers(
    recipe: Recipe, log_dir: Path, on_event: Callable[[str], None] = print
) -> AbstractContextManager[StartedServers]:
    """Start the servers of the `transformers` / `vllm` / `sglang` backends the recipe's stages use; the
    caller calls `wait_ready()` before the stages run (loading the model meanwhile overlaps its own set-up)."""
    used = {s.backend for s in recipe.stages if s.backend}
    backends = {n: spec for n, spec in recipe.backends.items() if n in used}
    sampling = {n: shared_sampling(recipe, n) for n, spec in backends.items() if spec.kind in SERVED_KINDS}
    return started_servers(backends, log_dir, sampling, on_event)


class StartedServers:
    """The servers of a run, started and perhaps still loading their models. `SERVERS_ENV` already tells
    stages (worker processes inherit it) where each listens; none may call one before `wait_ready()`."""

    def __init__(self, by_name: dict[str, ManagedServer], on_event: Callable[[str], None]) -> None:
        self.by_name = by_name
        self.distinct = {server_key(s.spec): s for s in by_name.values()}
        self._on_event = on_event
        self._ready = False

    def wait_ready(self) -> None:
        """Block until every server answers a completion (its model is loaded). May run in another
        thread than the one that started the servers; raises ServerError for one that fails."""
        if self._ready:
            return
        for server in self.distinct.values():
            seconds = server.wait_ready()
            self._on_event(f"server {server.name}: ready in {seconds:.1f} s (pid {server.pid})")
        self._ready = True

    def begin_stop(self) -> None:
        """Ask every server to stop (shutting down takes a second or two); leaving the
        `started_servers` block waits for them."""
        for server in self.distinct.values():
            server.begin_stop()


@contextmanager
def started_servers(
    backends: Mapping[str, BackendSpec],
    log_dir: Path,
    sampling: Mapping[str, GenerationParams] | None = None,
    on_event: Callable[[str], None] = print,
) -> Iterator[StartedServers]:
    """Start one server per distinct served backend (equal specs share one); stop all afterwards.

    Inside the block `SERVERS_ENV` tells stages (worker processes inherit it) where each server listens.
    `sampling`: per backend name, the settings the server is pinned to (default: its `generation`).
    """
    servers: dict[str, ManagedServer] = {}
    with ExitStack() as stack:
        by_key: dict[str, ManagedServer] = {}
        for name, spec in backends.items():
            if spec.kind not in SERVED_KINDS:
                continue
            key = server_key(spec)
            if key not in by_key:
                log = log_dir / f"server-{name}.log"
                server = stack.enter_context(ManagedServer(name, spec, log, (sampling or {}).get(name)))
                on_event(
                    f"server {name}: starting {server.label} {spec.model} on {server.url} (loading the model)"
                )
                by_key[key] = server
            servers[name] = by_key[key]
        with env_vars({SERVERS_ENV: json.dumps({key: server.url for key, server in by_key.items()})}):
            yield StartedServers(servers, on_event)
