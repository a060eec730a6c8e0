"""Open an HTML file in real headless Chromium and read back what it shows and what it fetched.

    page = open_in_chromium(path)         # Chromium's DOM after loading the page
    page.visible_text, page.collapsed_text, page.requests

Every network request the page makes goes to a recording proxy on 127.0.0.1 (loopback included), so
`requests` lists what a self-contained page must never ask for. Chromium comes from Debian's
`chromium` package (scripts/setup.sh installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

# Chromium calls these itself at start-up whatever page it opens (component updates, network time,
# sign-in), despite the flags below; a request to any other host came from the page.
CHROMIUM_OWN_HOSTS = {"update.googleapis.com", "clients2.google.com", "accounts.google.com"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
INVISIBLE = {"head", "style", "script", "title", "template"}


@dataclass
class Page:
    dom: str
    visible_text: str  # what a reader sees without clicking (closed <details> show only their summary)
    collapsed_text: str  # text inside closed <details>, shown only when opened
    requests: list[str] = field(default_factory=list)
    closed_details: int = 0


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's `chromium` is not installed: run scripts/setup.sh as root"
    return path


def open_in_chromium(path: Path) -> Page:
    with _RecordingProxy() as proxy, tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [*_command(profile, proxy.port), "--dump-dom", path.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        requests = [r for r in proxy.requests if _host(r) not in CHROMIUM_OWN_HOSTS]
    parser = _TextByVisibility()
    parser.feed(proc.stdout)
    return Page(
        dom=proc.stdout,
        visible_text=" ".join(" ".join(parser.visible).split()),
        collapsed_text=" ".join(" ".join(parser.collapsed).split()),
        requests=requests,
        closed_details=parser.closed_details,
    )


def screenshot(path: Path, png: Path, width: int = 1200, height: int = 2400) -> None:
    with _RecordingProxy() as proxy, tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                *_command(profile, proxy.port),
                f"--window-size={width},{height}",
                "--hide-scrollbars",
                f"--screenshot={png.resolve()}",
                path.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )


def _command(profile: str, proxy_port: int) -> list[str]:
    return [
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often give /dev/shm only 64 MB
        "--no-first-run",
        # Chromium's own calls home (updates, time, sign-in) would show up as requests of the page.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-pings",
        "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,"
        "CertificateTransparencyComponentUpdater,NetworkTimeServiceQuerying,SigninInterceptBubbleV2",
        f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>",  # loopback requests go to the proxy too
    ]


def _host(request: str) -> str:
    """`CONNECT host:443` or `GET http://host/path` -> host."""
    target = request.split(" ", 1)[1]
    return urlsplit(target).hostname or target.rsplit(":", 1)[0]


class _RecordingProxy:
    """An HTTP proxy that answers every request with 403 and records what was asked for."""

    def __init__(self) -> None:
        requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                requests.append(f"{self.command} {self.path}")
                self.send_error(403)

            do_GET = do_POST = do_HEAD = do_CONNECT = do_PUT = do_OPTIONS = _refuse

            def log_message(self, *args: object) -> None:
                pass

        self.requests = requests
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> _RecordingProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _TextByVisibility(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []  # tags; a closed <details> is pushed as "details:closed"
        self.visible: list[str] = []
        self.collapsed: list[str] = []
        self.closed_details = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            return
        if tag == "details" and not any(name == "open" for name, _ in attrs):
            self.closed_details += 1
            tag = "details:closed"
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].split(":")[0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if any(t in INVISIBLE for t in self.stack):
            return
        hidden = False
        for i, tag in enumerate(self.stack):
            if tag == "details:closed":
                # only the closed details' own <summary> shows
                hidden = hidden or not (i + 1 < len(self.stack) and self.stack[i + 1] == "summary")
        (self.collapsed if hidden else self.visible).append(data)
