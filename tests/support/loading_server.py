"""A loading phase in front of a real server command, which reports every request that did not wait for it.

    python tests/support/loading_server.py RECORD PROBES -- COMMAND... --host=H --port=N ...

Listens where COMMAND will (its `--host=` and `--port=`) and answers each GET /health with 503, as a
server still loading its model does, until it has answered PROBES of them; then it closes the port and
execs COMMAND (same pid: the engine's SIGTERM and PR_SET_PDEATHSIG still reach the real server), which
takes a few seconds more to listen and loads its model on the first completion. Each request is appended
to RECORD as `METHOD PATH`: anything but GET /health there was sent before the server was ready (it gets
503 too). The engine's health wait is the only sender of /health, so the hand-over happens only once the
engine waits, and a request sent without waiting is caught whatever the machine's speed.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


def main() -> None:
    record, probes, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    flags = dict(arg.split("=", 1) for arg in command if arg.startswith(("--host=", "--port=")))
    answered = 0

    class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _loading(self) -> None:
            nonlocal answered
            self.rfile.read(int(self.headers.get("Content-Length") or 0))  # closing on unread data resets
            with open(record, "a") as fh:
                fh.write(f"{self.command} {self.path}\n")
            if self.command == "GET" and self.path == "/health":
                answered += 1
            body = b'{"status": "loading"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _loading

    with HTTPServer((flags["--host"], int(flags["--port"])), Handler) as httpd:
        while answered < int(probes):
            httpd.handle_request()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
