"""A stand-in for `python -m sglang.launch_server` (SGLang is not installed here): the same command-line
flags, real HTTP on the given host and port, OpenAI-compatible endpoints with a canned answer.

It exercises what safepref does around a managed SGLang server (its command line, the health wait, the
warm-up request, stopping it); it is not SGLang, and nothing here says how SGLang itself behaves.
    python tests/support/sglang_standin.py --model-path=M --host=127.0.0.1 --port=N [SGLang flags]
Environment: STANDIN_RECORD (a file: its argv as JSON, then one line per request body),
STANDIN_LOAD_S (seconds /health answers 503 before "the model is loaded", default 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT = " I can't help with that, but here is a safer way to think about it."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    for flag in ("--dtype", "--tp-size", "--mem-fraction-static", "--max-running-requests"):
        parser.add_argument(flag)
    for flag in ("--chunked-prefill-size", "--revision", "--tokenizer-path"):
        parser.add_argument(flag)
    parser.add_argument("--trust-remote-code", action="store_true")
    args, unknown = parser.parse_known_args()
    record = os.environ.get("STANDIN_RECORD")
    lock = threading.Lock()

    def note(entry: Any) -> None:
        if record:
            with lock, open(record, "a") as fh:
                fh.write(json.dumps(entry) + "\n")

    note({"argv": sys.argv[1:], "unknown": unknown, "pid": os.getpid()})
    ready_at = time.monotonic() + float(os.environ.get("STANDIN_LOAD_S", "0.5"))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200 if time.monotonic() >= ready_at else 503, {})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": args.model_path, "object": "model"}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            note({"path": self.path, "body": body})
            if body.get("model") != args.model_path:
                self._send(404, {"error": f"model {body.get('model')!r} is not served"})
                return
            chat = self.path == "/v1/chat/completions"
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                self._send(404, {"error": "not found"})
                return
            text = TEXT.split()[: max(1, int(body.get("max_tokens") or 16))]
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            content = " " + " ".join(text)
            choice.update(
                {"message": {"role": "assistant", "content": content}} if chat else {"text": content}
            )
            self._send(
                200,
                {
                    "id": "cmpl-standin",
                    "object": "chat.completion" if chat else "text_completion",
                    "model": args.model_path,
                    "choices": [choice],
                    "usage": {
                        "prompt_tokens": 10,
                        "completion_tokens": len(text),
                        "total_tokens": 10 + len(text),
                    },
                },
            )

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
