"""A stand-in OpenAI-compatible server on loopback that answers like a busy vLLM server: no model, each
request takes time in proportion to its (variable) length, and the server records when every request
was in flight, so a client's use of its concurrency cap can be measured on the server's side.

    with PacedServer(seconds_per_request=2.0) as server:   # url: http://127.0.0.1:PORT/v1
        ...                                                 # server.busy_share(cap), server.max_in_flight

`python bench/paced_server.py [--seconds-per-request S]` serves the same in a process of its own (it
prints its url, and answers GET /_stats with what it recorded and POST /_reset): `PacedServerProcess`
drives it, so a benchmark's client does not share an interpreter (and its GIL) with the server, as a
real model server never does.

`hold=True` keeps every answer back until `release` is set (a test sets it once `reached(n)` fires), so a
test can see how many requests a client puts in flight at once without depending on timing; `hold="slow"`
keeps back only the requests whose body contains "slow", so a test can see what a client does while
they are in flight.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

WORDS = ("please", "consider", "talking", "kindly", "instead", "because", "it", "helps", "everyone", "and")
HOLD_LIMIT_S = 600.0  # a held answer is released after this even if nobody sets `release` (no hang for ever)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # hundreds of clients connect at once; the default backlog (5) drops them


class PacedServer:
    """`seconds_per_request` is the mean latency: a request of n tokens, n drawn in
    [max_tokens/2, max_tokens] from a hash of its body, takes n/(0.75·max_tokens) of it."""

    def __init__(self, *, seconds_per_request: float = 2.0, hold: bool | str = False) -> None:
        self.seconds_per_request = seconds_per_request
        self.hold = hold
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self.intervals: list[tuple[float, float]] = []  # (received, answered) per request, monotonic
        self.bodies: list[tuple[str, dict[str, Any]]] = []  # (path, body) in arrival order
        self.completion_tokens = 0
        self._waiters: list[tuple[int, threading.Event]] = []
        self._httpd = _Server(("127.0.0.1", 0), _handler_class(self))
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def reached(self, n: int) -> threading.Event:
        """An event set once `n` requests are in flight at the same time."""
        event = threading.Event()
        with self._lock:
            if self.max_in_flight >= n:
                event.set()
            else:
                self._waiters.append((n, event))
        return event

    def reset(self) -> None:
        with self._lock:
            self.max_in_flight = self.completion_tokens = 0
            self.intervals.clear()
            self.bodies.clear()

    def busy_share(self, cap: int) -> float:
        """The share of `cap` slots kept busy from the first request's arrival to the last answer."""
        return busy_share(self._intervals(), cap)

    def in_flight_profile(self, step_s: float) -> list[float]:
        """Mean requests in flight in each `step_s` from the first request's arrival to the last answer."""
        return in_flight_profile(self._intervals(), step_s)

    def durations(self) -> list[float]:
        """How long each request was held, in arrival order (what an ideal client's schedule replays)."""
        return [b - a for a, b in sorted(self._intervals())]

    def _intervals(self) -> list[tuple[float, float]]:
        with self._lock:
            return list(self.intervals)

    def __enter__(self) -> PacedServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # used by the handler ----------------------------------------------------------------------------

    def _enter(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.bodies.append((path, body))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            for n, event in [w for w in self._waiters if w[0] <= self._in_flight]:
                event.set()
                self._waiters.remove((n, event))

    def _leave(self, received: float, tokens: int) -> None:
        with self._lock:
            self._in_flight -= 1
            self.intervals.append((received, time.monotonic()))
            self.completion_tokens += tokens


def _answer(raw: bytes, max_tokens: int) -> tuple[str, int]:
    """A deterministic text of a deterministic, variable number of tokens (one word = one token)."""
    digest = hashlib.sha256(raw).digest()
    low = max(max_tokens // 2, 1)
    tokens = low + int.from_bytes(digest[:4], "big") % (max_tokens - low + 1)
    words = [WORDS[(digest[i % 32] + i) % len(WORDS)] for i in range(tokens)]
    return " " + " ".join(words) + ".", tokens


def _handler_class(server: PacedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers
        # TCP_NODELAY, as uvicorn (vLLM's server) sets it: http.server writes the headers and the body
        # separately, and with Nagle's algorithm on, the body waits for the client's delayed ACK (~40 ms
        # on Linux) -- 2% of a 2 s request, lost by every client alike
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send_json(self, value: object) -> None:
            data = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # /v1/_stats: what the server recorded, for PacedServerProcess
            with server._lock:
                self._send_json({"intervals": list(server.intervals), "bodies": list(server.bodies)})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/_reset"):
                server.reset()
                self._send_json({})
                return
            body = json.loads(raw)
            chat = self.path == "/v1/chat/completions"
            received = time.monotonic()
            server._enter(self.path, body)
            max_tokens = int(body.get("max_tokens") or 16)
            text, tokens = _answer(raw, max_tokens)
            try:
                if server.hold is True or (isinstance(server.hold, str) and server.hold.encode() in raw):
                    server.release.wait(HOLD_LIMIT_S)
                time.sleep(server.seconds_per_request * tokens / (0.75 * max_tokens))
                choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                else:
                    choice["text"] = text
                usage = {"prompt_tokens": 32, "completion_tokens": tokens, "total_tokens": 32 + tokens}
                data = json.dumps({"object": "chat.completion", "choices": [choice], "usage": usage}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                server._leave(received, tokens)

    return Handler


def busy_share(intervals: list[tuple[float, float]], cap: int) -> float:
    """The share of `cap` slots kept busy from the first request's arrival to the last answer."""
    start, end = min(a for a, _ in intervals), max(b for _, b in intervals)
    return sum(b - a for a, b in intervals) / (cap * (end - start))


def in_flight_profile(intervals: list[tuple[float, float]], step_s: float) -> list[float]:
    """Mean requests in flight in each `step_s` from the first request's arrival to the last answer."""
    start, end = min(a for a, _ in intervals), max(b for _, b in intervals)
    profile = [0.0] * (int((end - start) / step_s) + 1)
    for a, b in intervals:
        for k in range(int((a - start) / step_s), int((b - start) / step_s) + 1):
            low, high = start + k * step_s, start + (k + 1) * step_s
            profile[k] += max(0.0, min(b, high) - max(a, low)) / step_s
    return profile


class PacedServerProcess:
    """A `PacedServer` in a child process (`python bench/paced_server.py`), with the same read-outs."""

    def __init__(self, *, seconds_per_request: float = 2.0) -> None:
        self.seconds_per_request = seconds_per_request
        self.url = ""

    def __enter__(self) -> PacedServerProcess:
        import subprocess
        import sys

        self._process = subprocess.Popen(
            [sys.executable, __file__, f"--seconds-per-request={self.seconds_per_request}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self._process.kill()
            raise RuntimeError(f"the stand-in server did not start: {self.url!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait(10)

    def _stats(self) -> dict[str, Any]:
        import httpx

        return httpx.get(self.url + "/_stats", timeout=60).json()

    def reset(self) -> None:
        import httpx

        httpx.post(self.url + "/_reset", timeout=60).raise_for_status()

    @property
    def bodies(self) -> list[tuple[str, dict[str, Any]]]:
        return [(path, body) for path, body in self._stats()["bodies"]]

    def busy_share(self, cap: int) -> float:
        return busy_share([tuple(i) for i in self._stats()["intervals"]], cap)  # type: ignore[misc]

    def in_flight_profile(self, step_s: float) -> list[float]:
        return in_flight_profile([tuple(i) for i in self._stats()["intervals"]], step_s)  # type: ignore[misc]

    def durations(self) -> list[float]:
        return [b - a for a, b in sorted(self._stats()["intervals"])]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds-per-request", type=float, default=2.0)
    args = parser.parse_args()
    server = PacedServer(seconds_per_request=args.seconds_per_request)
    with server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
