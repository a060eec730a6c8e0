"""The evaluation's model servers: the managed-server path of `safepref run`, one server at a time.

Every `--model` / `--judge` that names a model here (`bundled`, a folder, a merged adapter, a Hub id) is
served by a managed server (`factory.backends.managed_server`: `transformers serve` by default,
`vllm serve` or SGLang with `--server`) on a free loopback port, and the runner talks to it through the
OpenAI-compatible client with `--concurrency` requests in flight. The open assistant turn of C²-Eval
goes to /v1/completions as a prompt rendered here with the model's tokenizer (`prefill_mode:
completions`), as for the stages of a run.

The phases run one after another (each model generates, then the judge judges), so the runner holds
one server at a time: asking for another stops the current one first, and the eval process itself
never loads weights. So at most one model copy is in memory, whatever the number of models compared.
A `transformers` server applies the sampling settings of its first request to all (5.23), so a server
is reused only for the same model AND the same sampling settings (a judge decodes greedily while
C²-Eval samples: the same model as judge gets a server of its own); vLLM and SGLang sample per request,
so their server is reused across phases. Stopping follows the managed server's lifecycle: SIGTERM then
SIGKILL to its process group at the end of the run, on an error and on Ctrl-C; it dies with the eval
process if that is killed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from factory.backends import Backend, create_backend
from factory.backends.managed_server import ManagedServer, client_spec, server_key
from schemas.generation import BackendSpec, GenerationParams

EventListener = Callable[[str], None]
WORK_DIR = ".work"  # in the report folder: server logs and merged adapters (not part of the report)


class EvalServers:
    """`with EvalServers(work_dir) as servers: backend = servers.client(name, spec, sampling)`.

    Logs go to `work_dir/server-NAME.log`; `on_event` is told when a server starts and is ready."""

    def __init__(self, work_dir: Path, on_event: EventListener | None = None) -> None:
        self.work_dir = work_dir
        self.on_event = on_event or (lambda line: None)
        self._server: ManagedServer | None = None
        self._key: tuple[str, str] | None = None

    @property
    def current(self) -> ManagedServer | None:
        """The server running now (None between phases or after close)."""
        return self._server

    def client(
        self,
        name: str,
        spec: BackendSpec,
        sampling: GenerationParams,
        prepare: Callable[[], None] | None = None,
        where: str | None = None,
    ) -> Backend:
        """An OpenAI-compatible client of a ready server for `spec`, started if needed (the previous
        server, if another, is stopped first). `prepare` runs after that stop and before the start
        (e.g. writing a merged adapter folder, which loads the weights once); `where` is what a
        server's error names (the option that asked for it)."""
        pinned = sampling.model_dump_json() if spec.kind == "transformers" else ""
        key = (server_key(spec), pinned)
        if self._server is None or self._key != key:
            self.stop()
            if prepare is not None:
                prepare()
            server = ManagedServer(name, spec, self.work_dir / f"server-{name}.log", sampling, where)
            self._server, self._key = server, key
            server.start()
            self.on_event(
                f"server {name}: starting {server.label} {spec.model} on {server.url} (loading the model)"
            )
            seconds = server.wait_ready()
            self.on_event(f"server {name}: ready in {seconds:.1f} s (pid {server.pid})")
        return create_backend(client_spec(spec, self._server.url))

    def stop(self) -> None:
        if self._server is not None:
            server, self._server, self._key = self._server, None, None
            server.stop()

    def __enter__(self) -> EvalServers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
