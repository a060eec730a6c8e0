"""A small OpenAI-compatible server for tests: real text from the bundled model, injectable faults.

    with OpenAITestServer(backend) as server:           # backend: a loaded TransformersBackend
        server.inject("status", times=2, status=503)    # the next 2 requests get 503
        BackendSpec(kind="openai", base_url=server.url, ...)
        server.log[-1].body, server.max_in_flight

Serves POST /v1/chat/completions (honours vLLM's `continue_final_message` / `add_generation_prompt`,
and beam search asked for as vLLM (`use_beam_search`, `n`) or transformers serve (`generation_config`)),
POST /v1/completions and GET /v1/models. Faults apply to the next matching requests, first in first out:
  status     reply `status` with a JSON error (and `Retry-After: retry_after` when given)
  hang       answer only after `hang_s`, and not at all once the client hangs up (its timeout)
  stall      hold the request until the server has finished another one (or it is the only one
             left), then close the connection without a reply: a stuck request, driven by events
  drop       close the connection without a reply
  malformed  200 with truncated JSON
  canned     200 with the text "canned reply" at once, without the model (for client timing tests)
  empty      200 with an empty completion
malformed, canned and empty replies do not run the model (their text is cut, canned or empty).
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from factory.backends.base import Completion
from factory.backends.chat import TemplateMismatch, render_prompt
from factory.backends.transformers_backend import TransformersBackend
from schemas.generation import GenerationParams

FAULTS = ("status", "hang", "stall", "drop", "malformed", "empty", "canned")


@dataclass
class Fault:
    kind: str
    times: int
    status: int = 503
    retry_after: float | None = None
    hang_s: float = 5.0
    match: str | None = None  # only requests whose raw body contains this string


@dataclass
class LoggedRequest:
    path: str
    body: dict[str, Any]
    authorization: str | None
    fault: str | None = None
    status: int | None = None
    prompt: str | None = None  # what the model saw
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    log: list[LoggedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    finished: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


class _QuietServer(ThreadingHTTPServer):
    """A client that stops early (a run ending on a 401 closes its connections in flight) is not an
    error of the server: no traceback on the test's stderr for a connection the client closed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class OpenAITestServer:
    """Runs on 127.0.0.1 with a free port in a background thread; `url` ends with /v1."""

    def __init__(
        self,
        backend: TransformersBackend,
        *,
        latency_s: float = 0.0,
        api_key: str | None = None,
        model_name: str = "test-model",
    ) -> None:
        self.backend = backend
        self.latency_s = latency_s  # added to every request, so concurrent requests overlap
        self.api_key = api_key  # when set, other bearer tokens get 401 (echoed back, as some hosts do)
        self.model_name = model_name
        self._state = _State()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_class(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # hanging handlers must not hold up shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def log(self) -> list[LoggedRequest]:
        with self._state.lock:
            return list(self._state.log)

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    def inject(
        self,
        kind: str,
        times: int = 1,
        *,
        status: int = 503,
        retry_after: float | None = None,
        hang_s: float = 5.0,
        match: str | None = None,
    ) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        with self._state.lock:
            self._state.faults.append(Fault(kind, times, status, retry_after, hang_s, match))

    def reset(self) -> None:
        """Forget faults, the request log and the in-flight maximum."""
        with self._state.lock:
            self._state.faults.clear()
            self._state.log.clear()
            self._state.max_in_flight = 0

    def start(self) -> OpenAITestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # used by the handler ----------------------------------------------------------------------------

    def _take_fault(self, raw_body: str) -> Fault | None:
        with self._state.lock:
            for fault in self._state.faults:
                if fault.match is None or fault.match in raw_body:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._state.faults.remove(fault)
                    return fault
        return None

    def _enter(self, entry: LoggedRequest) -> None:
        with self._state.lock:
            self._state.log.append(entry)
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)

    def _leave(self) -> None:
        with self._state.lock:
            self._state.in_flight -= 1
            self._state.finished += 1
            self._state.changed.notify_all()

    def _stall(self) -> None:
        """Wait until another request finishes, or until no other request is in flight."""
        state = self._state
        with state.lock:
            finished = state.finished
            state.changed.wait_for(lambda: state.finished > finished or state.in_flight == 1)


def _handler_class(server: OpenAITestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = {}
            entry = LoggedRequest(self.path, body, self.headers.get("Authorization"))
            server._enter(entry)
            try:
                self._serve(entry, raw)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass
            finally:
                server._leave()

        def _serve(self, entry: LoggedRequest, raw: str) -> None:
            if server.api_key is not None and entry.authorization != f"Bearer {server.api_key}":
                given = (entry.authorization or "").removeprefix("Bearer ")
                entry.status = 401
                self._json(401, {"error": {"message": f"Incorrect API key provided: {given}"}})
                return
            fault = server._take_fault(raw)
            entry.fault = fault.kind if fault else None
            if fault is not None and fault.kind == "status":
                entry.status = fault.status
                headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
                self._json(fault.status, {"error": {"message": "injected failure"}}, headers)
                return
            if fault is not None and fault.kind == "stall":
                server._stall()
            if fault is not None and fault.kind in ("drop", "stall"):
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if (
                fault is not None
                and fault.kind == "hang"
                and _closed_by_client(self.connection, fault.hang_s)
            ):
                return  # the client timed out and hung up: nobody is left to answer
            if server.latency_s:
                time.sleep(server.latency_s)
            chat = self.path == "/v1/chat/completions"
            if not chat and self.path != "/v1/completions":
                entry.status = 404
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                prompt, params = _prompt_and_params(server.backend.tokenizer, entry.body, chat)
            except (KeyError, TypeError, ValidationError, TemplateMismatch) as exc:
                entry.status = 400
                self._json(400, {"error": {"message": f"bad request: {exc}"}})
                return
            entry.prompt = prompt
            if fault is not None and fault.kind in ("canned", "malformed", "empty"):
                # no model time for a reply whose text nobody reads (cut JSON, an empty completion)
                prompt_tokens = len(server.backend.tokenizer(prompt, add_special_tokens=False).input_ids)
                completion = Completion("canned reply", prompt_tokens, 2, "stop")
            else:
                completion = server.backend.generate_text([prompt], [params])[0]
            text = "" if fault is not None and fault.kind == "empty" else completion.text
            choice: dict[str, Any] = {"index": 0, "finish_reason": completion.finish_reason}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            payload = {
                "id": f"cmpl-{len(server.log)}",
                "object": "chat.completion" if chat else "text_completion",
                "model": entry.body.get("model", server.model_name),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "total_tokens": completion.prompt_tokens + completion.completion_tokens,
                },
            }
            entry.status = 200
            if fault is not None and fault.kind == "malformed":
                data = json.dumps(payload).encode()
                self._send(200, data[: len(data) // 2], {})
            else:
                self._json(200, payload)

        def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers or {})

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _closed_by_client(connection: socket.socket, wait_s: float) -> bool:
    """Wait up to `wait_s` for the client to hang up (an event, not a fixed sleep)."""
    readable, _, _ = select.select([connection], [], [], wait_s)
    return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""


def _prompt_and_params(tokenizer: Any, body: dict[str, Any], chat: bool) -> tuple[str, GenerationParams]:
    stop = body.get("stop") or []
    # beam width as vLLM reads it (`use_beam_search` with `n` beams) or transformers serve (generation_config)
    beams = body.get("n") if body.get("use_beam_search") else None
    beams = json.loads(body.get("generation_config") or "{}").get("num_beams", beams)
    params = GenerationParams(
        max_new_tokens=body.get("max_tokens", 16),
        temperature=body.get("temperature", 0.0),
        top_p=body.get("top_p", 1.0),
        top_k=body.get("top_k"),
        repetition_penalty=body.get("repetition_penalty"),
        seed=body.get("seed"),
        stop=[stop] if isinstance(stop, str) else stop,
        num_beams=beams,
    )
    if not chat:
        prompt = body["prompt"]
        if not isinstance(prompt, str):
            raise TypeError("prompt must be a string")
        return prompt, params
    messages = body["messages"]
    continue_final = bool(body.get("continue_final_message", False))
    if continue_final and body.get("add_generation_prompt", True):
        raise TypeError("continue_final_message and add_generation_prompt cannot both be true")  # as vLLM
    return render_prompt(tokenizer, messages, continue_final=continue_final), params
