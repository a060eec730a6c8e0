"""A small Hub-protocol server for tests: the unchanged huggingface_hub and datasets clients talk to it.

Dataset repos only. It keeps git-like commits in memory, stores LFS objects after checking their sha256
and size, enforces tokens, privacy and write rights, answers 412 on a stale parent commit and can
inject faults (a status code on a chosen route, a given number of times). It records every request as
its route pattern, so a test can pin the set of routes a client uses. It never logs request headers.

What it cannot prove: Xet transfers, the Hub's own YAML rules, the gated access-request flow.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

GITATTRIBUTES = (
    "*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.gz filter=lfs diff=lfs merge=lfs -text\n"
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
    "*.zst filter=lfs diff=lfs merge=lfs -text\n"
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"
_REV = r"(?P<rev>[^/]+)"

# Route patterns, as the request log names them.
WHOAMI = "GET /api/whoami-v2"
CREATE_REPO = "POST /api/repos/create"
VALIDATE_YAML = "POST /api/validate-yaml"
DATASET_INFO = "GET /api/datasets/{repo}"
DATASET_INFO_REV = "GET /api/datasets/{repo}/revision/{rev}"
PREUPLOAD = "POST /api/datasets/{repo}/preupload/{rev}"
LFS_BATCH = "POST /datasets/{repo}.git/info/lfs/objects/batch"
LFS_VERIFY = "POST /datasets/{repo}.git/info/lfs/objects/verify"
LFS_PUT = "PUT /_lfs/{upload_id}"
COMMIT = "POST /api/datasets/{repo}/commit/{rev}"
TREE = "GET /api/datasets/{repo}/tree/{rev}"
PATHS_INFO = "POST /api/datasets/{repo}/paths-info/{rev}"
RESOLVE_HEAD = "HEAD /datasets/{repo}/resolve/{rev}/{path}"
RESOLVE_GET = "GET /datasets/{repo}/resolve/{rev}/{path}"
SETTINGS = "PUT /api/datasets/{repo}/settings"
TAG = "POST /api/datasets/{repo}/tag/{rev}"
REFS = "GET /api/datasets/{repo}/refs"
COMMITS = "GET /api/datasets/{repo}/commits/{rev}"


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Entry:
    """One file at one commit: regular content, or an LFS pointer to a stored object."""

    size: int
    blob_oid: str
    content: bytes | None = None
    lfs_sha256: str | None = None


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    gated: str | bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_oids: set[str] = field(default_factory=set)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def head(self) -> Commit:
        return self.commits[self.branches["main"]]


@dataclass
class Fault:
    route: str
    status: int
    times: int
    retry_after: str | None = None


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    route: str
    path: str
    status: int
    received_at: float = field(default_factory=time.time)  # wall time (time.time())


class HubError(Exception):
    """An error reply: status, Hub error code header, JSON body."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubServer:
    """The server state and its routes. Start with `start()`; `url` is the endpoint to give clients."""

    def __init__(self, tokens: dict[str, str], orgs: dict[str, set[str]] | None = None) -> None:
        self.tokens = dict(tokens)  # token -> user name
        self.orgs = {k: set(v) for k, v in (orgs or {}).items()}  # org -> member names
        self.repos: dict[str, Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.log: list[LoggedRequest] = []
        self.lfs_puts: list[str] = []  # sha256 of every object whose bytes were sent
        self.faults: list[Fault] = []
        self.tree_page_size = 50
        self.ignore_private_on_create = False  # like an org whose default overrides the request
        self._uploads: dict[str, tuple[str, str, int]] = {}  # upload id -> (repo, sha256, size)
        self._counter = 0
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Reply]]] = [
            (WHOAMI, re.compile(r"^/api/whoami-v2$"), self._whoami),
            (CREATE_REPO, re.compile(r"^/api/repos/create$"), self._create_repo),
            (VALIDATE_YAML, re.compile(r"^/api/validate-yaml$"), self._validate_yaml),
            (DATASET_INFO, re.compile(rf"^/api/datasets/{_REPO}$"), self._dataset_info),
            (DATASET_INFO_REV, re.compile(rf"^/api/datasets/{_REPO}/revision/{_REV}$"), self._dataset_info),
            (PREUPLOAD, re.compile(rf"^/api/datasets/{_REPO}/preupload/{_REV}$"), self._preupload),
            (LFS_BATCH, re.compile(rf"^/datasets/{_REPO}\.git/info/lfs/objects/batch$"), self._lfs_batch),
            (LFS_VERIFY, re.compile(rf"^/datasets/{_REPO}\.git/info/lfs/objects/verify$"), self._lfs_verify),
            (LFS_PUT, re.compile(r"^/_lfs/(?P<upload_id>[0-9a-f]+)$"), self._lfs_put),
            (COMMIT, re.compile(rf"^/api/datasets/{_REPO}/commit/{_REV}$"), self._commit),
            (TREE, re.compile(rf"^/api/datasets/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?$"), self._tree),
            (PATHS_INFO, re.compile(rf"^/api/datasets/{_REPO}/paths-info/{_REV}$"), self._paths_info),
            (RESOLVE_HEAD, re.compile(rf"^/datasets/{_REPO}/resolve/{_REV}/(?P<path>.+)$"), self._resolve),
            (RESOLVE_GET, re.compile(rf"^/datasets/{_REPO}/resolve/{_REV}/(?P<path>.+)$"), self._resolve),
            (SETTINGS, re.compile(rf"^/api/datasets/{_REPO}/settings$"), self._settings),
            (TAG, re.compile(rf"^/api/datasets/{_REPO}/tag/{_REV}$"), self._tag),
            (REFS, re.compile(rf"^/api/datasets/{_REPO}/refs$"), self._refs),
            (COMMITS, re.compile(rf"^/api/datasets/{_REPO}/commits/{_REV}$"), self._commits),
        ]

    # ----------------------------------------------------------------- lifecycle and test helpers
    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def inject(self, route: str, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer `status` on the next `times` requests to `route` (a route pattern constant)."""
        with self._lock:
            self.faults.append(Fault(route, status, times, retry_after))

    def routes_hit(self) -> set[str]:
        with self._lock:
            return {r.route for r in self.log}

    def commit_count(self, repo_id: str) -> int:
        with self._lock:
            return len(self.repos[repo_id].commits)

    def file_bytes(self, repo_id: str, path: str, rev: str = "main") -> bytes:
        with self._lock:
            repo = self.repos[repo_id]
            entry = self._commit_at(repo, rev).files[path]
            return self._entry_bytes(entry)

    # ----------------------------------------------------------------- dispatch
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Reply:
        split = urlsplit(raw_path)
        query = parse_qs(split.query)
        path = split.path
        for name, pattern, func in self._routes:
            if not name.startswith(method + " "):
                continue
            match = pattern.match(path)
            if match is None:
                continue
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            reply = self._fault(name)
            if reply is None:
                try:
                    user = self._user(headers)
                    reply = func(user=user, query=query, body=body, headers=headers, method=method, **params)
                except HubError as err:
                    reply = self._error_reply(err)
            self._record(method, name, path, reply.status)
            return reply
        self._record(method, f"UNMATCHED {method} {path}", path, 404)
        return self._error_reply(HubError(404, f"no route for {method} {path}"))

    def _record(self, method: str, route: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append(LoggedRequest(method, route, path, status))

    def _fault(self, route: str) -> Reply | None:
        with self._lock:
            for fault in self.faults:
                if fault.route == route and fault.times > 0:
                    fault.times -= 1
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return Reply.json({"error": f"injected fault {fault.status}"}, fault.status, headers)
        return None

    @staticmethod
    def _error_reply(err: HubError) -> Reply:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        return Reply.json({"error": err.message, **err.extra}, err.status, headers)

    # ----------------------------------------------------------------- auth
    def _user(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization")
        if auth is None:
            return None
        token = auth.removeprefix("Bearer ").strip()
        user = self.tokens.get(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _namespaces(self, user: str) -> set[str]:
        return {user} | {org for org, members in self.orgs.items() if user in members}

    def _repo_for_read(self, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and (user is None or repo.namespace not in self._namespaces(user))):
            # Like the Hub: a private repo looks exactly like a missing one.
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _repo_for_write(self, repo_id: str, user: str | None) -> Repo:
        if user is None:
            raise HubError(401, "You must be authenticated to write", "RepoNotFound")
        repo = self._repo_for_read(repo_id, user)
        if repo.namespace not in self._namespaces(user):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _can_read_gated(self, repo: Repo, user: str | None) -> bool:
        return not repo.gated or (user is not None and repo.namespace in self._namespaces(user))

    # ----------------------------------------------------------------- revisions and files
    def _commit_at(self, repo: Repo, rev: str) -> Commit:
        if rev in repo.branches:
            return repo.commits[repo.branches[rev]]
        if rev in repo.tags:
            return repo.commits[repo.tags[rev]]
        if rev in repo.commits:
            return repo.commits[rev]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _entry_bytes(self, entry: Entry) -> bytes:
        if entry.lfs_sha256 is not None:
            return self.lfs_store[entry.lfs_sha256]
        assert entry.content is not None
        return entry.content

    def _new_oid(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((*parts, str(self._counter))).encode()).hexdigest()

    def _lfs_patterns(self, commit: Commit) -> list[str]:
        entry = commit.files.get(".gitattributes")
        if entry is None or entry.content is None:
            return []
        lines = entry.content.decode(errors="replace").splitlines()
        return [ln.split()[0] for ln in lines if "filter=lfs" in ln and ln.split()]

    def _file_json(self, path: str, entry: Entry, commit: Commit | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "file", "oid": entry.blob_oid, "size": entry.size, "path": path}
        if entry.lfs_sha256 is not None:
            pointer_size = len(lfs_pointer(entry.lfs_sha256, entry.size))
            data["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": pointer_size}
        if commit is not None:
            data["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return data

    @staticmethod
    def _dir_json(path: str) -> dict[str, Any]:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}

    def _listing(self, commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        base = prefix.strip("/")
        if base and base in commit.files:
            raise HubError(400, f"{base} is a file, not a folder")
        start = f"{base}/" if base else ""
        under = sorted(p for p in commit.files if p.startswith(start))
        if base and not under:
            raise HubError(404, f"{base} does not exist", "EntryNotFound")
        items: dict[str, dict[str, Any]] = {}
        for path in under:
            rest = path[len(start) :].split("/")
            depth = len(rest) if recursive else 1
            for i in range(1, min(depth, len(rest))):
                sub = start + "/".join(rest[:i])
                items.setdefault(sub, self._dir_json(sub))
            if len(rest) == 1 or recursive:
                items[path] = self._file_json(path, commit.files[path])
            else:
                sub = start + rest[0]
                items.setdefault(sub, self._dir_json(sub))
        return [items[k] for k in sorted(items)]

    # ----------------------------------------------------------------- routes
    def _whoami(self, user: str | None, **_: Any) -> Reply:
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        orgs = [{"name": o, "type": "org"} for o in sorted(self._namespaces(user) - {user})]
        access = {"displayName": "test token", "role": "write"}
        return Reply.json({"type": "user", "name": user, "orgs": orgs, "auth": {"accessToken": access}})

    def _create_repo(self, user: str | None, body: bytes, **_: Any) -> Reply:
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        payload = json.loads(body)
        if payload.get("type") != "dataset":
            raise HubError(400, "this test server only holds dataset repos")
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        if namespace not in self._namespaces(user):
            raise HubError(
                403, f'You don\'t have the rights to create a dataset under the namespace "{namespace}"'
            )
        url = f"{self.url}/datasets/{repo_id}"
        with self._lock:
            if repo_id in self.repos:
                raise HubError(409, "You already created this dataset repo", url=url)
            private = payload.get("visibility") == "private" or payload.get("private") is True
            if self.ignore_private_on_create:
                private = False
            repo = Repo(repo_id=repo_id, private=private, created_at=_now())
            content = GITATTRIBUTES.encode()
            oid = self._new_oid(repo_id, "initial")
            files = {".gitattributes": Entry(len(content), git_blob_oid(content), content=content)}
            repo.commits[oid] = Commit(oid, None, "initial commit", "", user, _now(), files)
            repo.branches["main"] = oid
            self.repos[repo_id] = repo
        return Reply.json({"url": url, "name": repo_id})

    def _validate_yaml(self, body: bytes, **_: Any) -> Reply:
        content = json.loads(body).get("content", "")
        errors = []
        if content.startswith("---"):
            header = content.split("\n---", 1)[0].removeprefix("---")
            try:
                meta = yaml.safe_load(header)
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        if errors:
            return Reply.json({"errors": errors, "warnings": []}, 400)
        return Reply.json({"errors": [], "warnings": []})

    def _dataset_info(self, user: str | None, repo: str, rev: str = "main", **_: Any) -> Reply:
        with self._lock:
            r = self._repo_for_read(repo, user)
            commit = self._commit_at(r, rev)
            card: dict[str, Any] = {}
            if "README.md" in commit.files:
                text = self._entry_bytes(commit.files["README.md"]).decode()
                if text.startswith("---"):
                    card = yaml.safe_load(text.split("\n---", 1)[0].removeprefix("---")) or {}
            data = {
                "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
                "id": repo,
                "author": r.namespace,
                "sha": commit.oid,
                "private": r.private,
                "gated": r.gated,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": list(card.get("tags") or []),
                "cardData": card,
                "createdAt": r.created_at,
                "lastModified": commit.date,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            }
        return Reply.json(data)

    def _preupload(self, user: str | None, repo: str, rev: str, body: bytes, **_: Any) -> Reply:
        with self._lock:
            r = self._repo_for_write(repo, user)
            commit = self._commit_at(r, rev)
            patterns = self._lfs_patterns(commit)
            files = []
            for item in json.loads(body)["files"]:
                path, size = item["path"], item["size"]
                sample = base64.b64decode(item["sample"])
                name = path.rsplit("/", 1)[-1]
                lfs = (
                    any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)
                    or size >= LFS_SIZE_THRESHOLD
                    or b"\0" in sample
                )
                existing = commit.files.get(path)
                remote = None if existing is None else existing.lfs_sha256 or existing.blob_oid
                mode = "lfs" if lfs else "regular"
                files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": remote})
        return Reply.json({"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, user: str | None, repo: str, body: bytes, **_: Any) -> Reply:
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "only uploads are supported")
        objects = []
        with self._lock:
            r = self._repo_for_write(repo, user)
            for obj in payload["objects"]:
                oid, size = obj["oid"], obj["size"]
                out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in r.lfs_oids:  # stored objects get no actions: the client sends nothing
                    upload_id = self._new_oid(repo, oid)
                    self._uploads[upload_id] = (repo, oid, size)
                    verify = f"{self.url}/datasets/{repo}.git/info/lfs/objects/verify"
                    out["actions"] = {
                        "upload": {"href": f"{self.url}/_lfs/{upload_id}"},
                        "verify": {"href": verify},
                    }
                objects.append(out)
        return Reply.json(
            {"transfer": "basic", "objects": objects},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_put(self, upload_id: str, body: bytes, **_: Any) -> Reply:
        # The upload URL is the credential, as with a presigned S3 URL: no Hub token is sent here.
        with self._lock:
            target = self._uploads.get(upload_id)
            if target is None:
                raise HubError(403, "unknown or expired upload URL")
            repo, oid, size = target
            self.lfs_puts.append(oid)
            if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, "uploaded content does not match its sha256 and size")
            self.lfs_store[oid] = body
            self.repos[repo].lfs_oids.add(oid)
            del self._uploads[upload_id]
        return Reply(200, b"", {"ETag": f'"{oid}"'})

    def _lfs_verify(self, user: str | None, repo: str, body: bytes, **_: Any) -> Reply:
        payload = json.loads(body)
        with self._lock:
            r = self._repo_for_write(repo, user)
            if payload["oid"] not in r.lfs_oids or len(self.lfs_store[payload["oid"]]) != payload["size"]:
                raise HubError(404, "object not stored")
        return Reply.json({"success": True})

    def _commit(self, user: str | None, repo: str, rev: str, body: bytes, **_: Any) -> Reply:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            r = self._repo_for_write(repo, user)
            if rev not in r.branches:
                raise HubError(400, f"can only commit to a branch, not {rev}")
            head = r.commits[r.branches[rev]]
            parent = header.get("parentCommit")
            if parent is not None and not head.oid.startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"]
                if key == "file":
                    content = base64.b64decode(value["content"])
                    files[path] = Entry(len(content), git_blob_oid(content), content=content)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in r.lfs_oids:
                        raise HubError(
                            422, f"LFS pointer for {path} points to an object that was never uploaded"
                        )
                    size = len(self.lfs_store[oid])
                    files[path] = Entry(size, git_blob_oid(lfs_pointer(oid, size)), lfs_sha256=oid)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    files = {p: e for p, e in files.items() if not p.startswith(path.rstrip("/") + "/")}
                else:
                    raise HubError(400, f"unknown commit operation {key}")
            oid = self._new_oid(repo, head.oid, header.get("summary", ""))
            r.commits[oid] = Commit(
                oid,
                head.oid,
                header.get("summary", ""),
                header.get("description", ""),
                user or "",
                _now(),
                files,
            )
            r.branches[rev] = oid
        url = f"{self.url}/datasets/{repo}/commit/{oid}"
        return Reply.json({"success": True, "commitOid": oid, "commitUrl": url, "hookOutput": ""})

    def _tree(
        self, user: str | None, repo: str, rev: str, query: dict[str, list[str]], path: str = "", **_: Any
    ) -> Reply:
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
        cursor = int(query.get("cursor", ["0"])[0])
        with self._lock:
            r = self._repo_for_read(repo, user)
            commit = self._commit_at(r, rev)
            items = self._listing(commit, path, recursive)
            if expand:
                for item in items:
                    if item["type"] == "file":
                        item["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        page = items[cursor : cursor + self.tree_page_size]
        headers = {}
        if cursor + self.tree_page_size < len(items):
            qs = f"recursive={str(recursive).lower()}&expand={str(expand).lower()}&cursor={cursor + self.tree_page_size}"
            tail = f"/{quote(path)}" if path else ""
            headers["Link"] = (
                f'<{self.url}/api/datasets/{repo}/tree/{quote(rev, safe="")}{tail}?{qs}>; rel="next"'
            )
        return Reply.json(page, headers=headers)

    def _paths_info(self, user: str | None, repo: str, rev: str, body: bytes, **_: Any) -> Reply:
        form = parse_qs(body.decode())
        with self._lock:
            r = self._repo_for_read(repo, user)
            commit = self._commit_at(r, rev)
            out = []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    out.append(self._file_json(path, commit.files[path]))
                elif any(p.startswith(path + "/") for p in commit.files):
                    out.append(self._dir_json(path))
        return Reply.json(out)

    def _resolve(
        self, user: str | None, repo: str, rev: str, path: str, headers: dict[str, str], method: str, **_: Any
    ) -> Reply:
        with self._lock:
            r = self._repo_for_read(repo, user)
            if not self._can_read_gated(r, user):
                raise HubError(403, f"Access to dataset {repo} is restricted: ask for access", "GatedRepo")
            commit = self._commit_at(r, rev)
            entry = commit.files.get(path)
            if entry is None:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
            data = self._entry_bytes(entry)
        out = {
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.lfs_sha256 is not None:
            out.update({"ETag": f'"{entry.lfs_sha256}"', "X-Linked-Etag": f'"{entry.lfs_sha256}"'})
            out["X-Linked-Size"] = str(entry.size)
        else:
            out["ETag"] = f'"{entry.blob_oid}"'
        status = 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", headers.get("range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(data) - 1
            else:
                start, end = max(0, len(data) - int(match.group(2))), len(data) - 1
            if start >= len(data):
                return Reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            end = min(end, len(data) - 1)
            out["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        return Reply(status, data, out)

    def _settings(self, user: str | None, repo: str, body: bytes, **_: Any) -> Reply:
        payload = json.loads(body)
        with self._lock:
            r = self._repo_for_write(repo, user)
            if "gated" in payload:
                if payload["gated"] not in ("auto", "manual", False):
                    raise HubError(400, f"invalid gated value {payload['gated']!r}")
                r.gated = payload["gated"]
            if "visibility" in payload:
                r.private = payload["visibility"] == "private"
            if "private" in payload:
                r.private = bool(payload["private"])
        return Reply.json({})

    def _tag(self, user: str | None, repo: str, rev: str, body: bytes, **_: Any) -> Reply:
        payload = json.loads(body)
        with self._lock:
            r = self._repo_for_write(repo, user)
            commit = self._commit_at(r, rev)
            if payload["tag"] in r.tags:
                raise HubError(409, f"Tag {payload['tag']} already exists")
            r.tags[payload["tag"]] = commit.oid
        return Reply.json({})

    def _refs(self, user: str | None, repo: str, **_: Any) -> Reply:
        with self._lock:
            r = self._repo_for_read(repo, user)
            branches = [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in r.branches.items()
            ]
            tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in r.tags.items()]
        return Reply.json({"branches": branches, "converts": [], "tags": tags})

    def _commits(self, user: str | None, repo: str, rev: str, **_: Any) -> Reply:
        with self._lock:
            r = self._repo_for_read(repo, user)
            commit: Commit | None = self._commit_at(r, rev)
            out = []
            while commit is not None:
                out.append(
                    {
                        "id": commit.oid,
                        "title": commit.title,
                        "message": commit.message,
                        "authors": [{"user": commit.author}],
                        "date": commit.date,
                    }
                )
                commit = r.commits[commit.parent] if commit.parent else None
        return Reply.json(out)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet, and never anything from the headers

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.hub.handle(self.command, self.path, headers, body)
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _serve
