"""A request cache for LLM generations, keyed on everything that determines the answer.

Key: sha256 of the rendered request (messages, decoding parameters) plus the model id and revision,
the prompt rendering (tokenizer, prefill mode) and the client's kind: `openai` for every server,
managed or not (`client_spec`), so the model, not the server software, keys an answer. Only successful completions are stored. A re-run, a resumed run or a recipe edit that
leaves a request unchanged reuses its completion instead of generating it again. Unseeded sampling
(temperature > 0 without a seed) is not cached: its answers are meant to differ between calls.
The store is SQLite (stdlib), one file per output folder, safe across processes (WAL). Each answer
is stored as it arrives, so a killed run loses only the requests that were in flight.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from factory.backends.base import (
    Admission,
    Backend,
    ChatRequest,
    Completion,
    in_order,
    stream_completions,
)
from factory.core.models import model_id, model_revision
from schemas.generation import BackendSpec, GenerationParams

REQUEST_CACHE_ENV = "SAFEPREF_REQUEST_CACHE"
REQUEST_CACHE_FILE = "requests.sqlite"  # in DIR/.work


def request_key(
    backend: Any, kind: str, request: ChatRequest, rendering: dict[str, Any] | None = None
) -> str | None:
    """None when the request must not be cached (unseeded sampling). `rendering`: the backend
    settings that change how messages become a prompt (tokenizer, prefill mode)."""
    params = request.params.model_dump(mode="json")
    if params.get("temperature", 0) > 0 and params.get("seed") is None:
        return None
    payload = {
        "kind": kind,
        "model": backend.model_id,
        "revision": backend.revision,
        "messages": request.messages,
        "params": params,
        **({"rendering": rendering} if rendering else {}),
        **({"close_final_turn": True} if request.close_final_turn else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestCache:
    """One connection to the store. Call `prepare` once, in one process, before workers open it:
    switching a database to WAL needs an exclusive lock, and SQLite answers "database is locked"
    at once (no busy wait) when several processes try it together."""

    def __init__(self, path: Path) -> None:
        self.prepare(path)
        self._db = sqlite3.connect(path, timeout=60, check_same_thread=False)
        # a commit per answer: in WAL mode NORMAL skips the fsync per commit and still survives the
        # process being killed (only a power loss can drop the last answers, which are then regenerated)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def prepare(path: Path) -> None:
        """Create the store in WAL mode unless it already is; a no-op (no write lock) afterwards."""
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 60
        while True:
            db = sqlite3.connect(path, timeout=60)
            try:
                (mode,) = db.execute("PRAGMA journal_mode").fetchone()
                if str(mode).lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                db.commit()
                return
            except sqlite3.OperationalError as exc:
                # the mode switch does not wait on SQLite's busy handler: retry it ourselves
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            finally:
                db.close()
            time.sleep(random.uniform(0.01, 0.1))

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(
                    f"SELECT key, value FROM completions WHERE key IN ({marks})", chunk
                ):
                    stored = json.loads(value)
                    stored.pop("request", None)
                    found[key] = Completion(**stored)
        return found

    def put_many(self, items: list[tuple[str, Completion, ChatRequest | None]]) -> None:
        """Store completions with the requests they answer (what `requests` reads back)."""
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO completions (key, value) VALUES (?, ?)",
                [(k, json.dumps({**asdict(c), "cached": False, "request": _stored(r)})) for k, c, r in items],
            )
            self._db.commit()

    def requests(self) -> list[ChatRequest]:
        """Every stored request, in insertion order (benchmarks replay a run's requests with them)."""
        with self._lock:
            rows = self._db.execute("SELECT value FROM completions ORDER BY rowid").fetchall()
        out = []
        for (value,) in rows:
            request = json.loads(value).get("request")
            if request is not None:
                params = GenerationParams.model_validate(request.pop("params"))
                out.append(ChatRequest(params=params, **request))
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _stored(request: ChatRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    return {
        "messages": request.messages,
        "params": request.params.model_dump(mode="json"),
        "close_final_turn": request.close_final_turn,
    }


def count_answers(path: Path) -> int:
    """How many answers the store at `path` holds (0 when there is none yet); opens it read-only."""
    if not path.is_file():
        return 0
    # With no WAL frames beside it (its last writer closed and checkpointed them), the file holds every
    # answer and is opened as immutable: a read-only WAL reader must otherwise create the -shm index,
    # which fails with "disk I/O error" on a full disk, exactly when this count is wanted.
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.is_file() and wal.stat().st_size > 0 else "immutable=1"
    db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=60)
    try:
        (count,) = db.execute("SELECT count(*) FROM completions").fetchone()
        return int(count)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # created but not yet prepared
            return 0
        raise
    finally:
        db.close()


class CachedBackend:
    """Wraps a backend: answers cached requests from the store, sends only the rest.

    The wrapped backend is created on the first cache miss, so a fully cached re-run never loads a
    model or opens a connection.
    """

    def __init__(self, make_backend: Callable[[], Backend], spec: BackendSpec, cache: RequestCache) -> None:
        self._make, self.kind, self.cache = make_backend, spec.kind, cache
        self._inner: Backend | None = None
        # requests per call to a backend that cannot stream: answers are stored after each call, and
        # four of its batches per call still let it group prompts of similar length (less padding)
        self._chunk = 4 * spec.batch_size
        self.model_id, self.revision = model_id(spec.model), model_revision(spec.model, spec.revision)
        if self.revision is None and Path(spec.model).is_dir():  # a local folder: key on its content
            from factory.core.hashing import folder_fingerprint

            self.revision = "folder-sha256:" + folder_fingerprint(Path(spec.model))
        self.rendering = {"tokenizer": spec.tokenizer}
        if spec.kind == "openai":
            self.rendering["prefill_mode"] = spec.prefill_mode

    @property
    def inner(self) -> Backend:
        if self._inner is None:
            self._inner = self._make()
        return self._inner

    @property
    def in_flight(self) -> int | None:
        """Requests the wrapped backend has in flight, when it tells (None: it cannot, or it is still
        being created, e.g. loading a model)."""
        return getattr(self._inner, "in_flight", None)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return in_order(len(requests), self.stream(requests))

    def stream(
        self, requests: Sequence[ChatRequest], admission: Admission | None = None
    ) -> Iterator[tuple[int, Completion]]:
        """Cached answers first, then the others as they arrive, each stored at once (`admission`
        counts the requests sent, the cached ones are not)."""
        keys = [request_key(self, self.kind, r, self.rendering) for r in requests]
        cached = self.cache.get_many([k for k in keys if k is not None])
        todo = [i for i, k in enumerate(keys) if k is None or k not in cached]
        self.cache.hits += len(requests) - len(todo)
        self.cache.misses += len(todo)
        for i, key in enumerate(keys):
            if key is not None and key in cached:
                yield i, replace(cached[key], cached=True)
        if not todo:
            return
        for j, c in stream_completions(self.inner, [requests[i] for i in todo], self._chunk, admission):
            i = todo[j]
            key = keys[i]
            if key is not None and c.error is None:
                self.cache.put_many([(key, c, requests[i])])
            yield i, c

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        self.cache.close()
