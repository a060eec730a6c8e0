"""An OpenAI-compatible server on 127.0.0.1 that answers a fixed text and can hold requests.

Process tests need a run that is provably in the middle of generating when they interrupt or kill
it, whatever the machine's speed: `answer_first(n)` answers n requests, then holds every later one
until `release()`; `holding` is set when a request is held, `held` counts them (`wait_held`), and
`release_held()` answers those held so far while later ones are held in turn; `received` counts
every request. The text is canned: these tests are
about processes, not wording (tests/support/openai_server.py serves real model text).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT = "I can't help with that, but I can point you to safe resources."


class HeldServer:
    def __init__(self) -> None:
        self.answered = 0
        self.received = 0
        self.held = 0
        self.limit: int | None = None
        self.holding = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._held_changed = threading.Condition(self._lock)
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def answer_first(self, n: int) -> None:
        with self._lock:
            self.answered, self.received, self.held, self.limit = 0, 0, 0, n
            self.holding.clear()
            self._released.clear()

    def release(self) -> None:
        with self._lock:
            self.limit = None
        self._released.set()

    def release_held(self) -> None:
        """Answer the requests held now; later ones are held until the next release."""
        with self._lock:
            released, self._released, self.held = self._released, threading.Event(), 0
        released.set()

    def wait_held(self, n: int, timeout: float) -> bool:
        """Block until `n` requests are held (False after `timeout`: a hang guard)."""
        with self._held_changed:
            return self._held_changed.wait_for(lambda: self.held >= n, timeout)

    def _admit(self) -> threading.Event | None:
        """None to answer now, else the event to hold this request until."""
        with self._lock:
            self.received += 1
            if self.limit is None or self.answered < self.limit:
                self.answered += 1
                return None
            self.held += 1
            self._held_changed.notify_all()
            self.holding.set()
            return self._released

    def __enter__(self) -> HeldServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A stopped or killed run resets its open connections: expected here, not worth a traceback."""


def _handler(server: HeldServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            hold = server._admit()
            if hold is not None:
                hold.wait()
            chat = self.path == "/v1/chat/completions"
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            choice.update({"message": {"role": "assistant", "content": TEXT}} if chat else {"text": TEXT})
            data = json.dumps(
                {
                    "id": "cmpl-held",
                    "object": "chat.completion" if chat else "text_completion",
                    "model": body.get("model", "test-model"),
                    "choices": [choice],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22},
                }
            ).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the run was stopped meanwhile
                pass

    return Handler
