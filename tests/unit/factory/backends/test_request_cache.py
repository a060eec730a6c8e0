"""The request cache store: many worker processes open one fresh file at once (as distilabel loads
steps in parallel) and all of them read and write it; unseeded sampling is never cached."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

from factory.backends.base import ChatRequest, Completion
from factory.backends.request_cache import RequestCache, request_key
from schemas.generation import GenerationParams

WORKERS = 8


def _done(text: str) -> Completion:
    return Completion(text=text, prompt_tokens=1, completion_tokens=1, finish_reason="stop")


def _open_and_write(path: str, barrier: mp.synchronize.Barrier, worker: int, errors: mp.Queue[str]) -> None:
    try:
        barrier.wait()
        cache = RequestCache(Path(path))
        cache.put_many([(f"key-{worker}", _done(f"answer {worker}"), None)])
        cache.close()
    except Exception as exc:  # reported to the parent, which fails the test
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")


def test_many_processes_open_a_fresh_store_at_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    for attempt in range(3):  # a race: repeat on a fresh file each time
        path = tmp_path / f"try{attempt}" / "requests.sqlite"
        barrier, errors = ctx.Barrier(WORKERS), ctx.Queue()
        procs = [
            ctx.Process(target=_open_and_write, args=(str(path), barrier, i, errors)) for i in range(WORKERS)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
        assert failures == [], failures
        assert [p.exitcode for p in procs] == [0] * WORKERS
        cache = RequestCache(path)
        found = cache.get_many([f"key-{i}" for i in range(WORKERS)])
        cache.close()
        assert {k: c.text for k, c in found.items()} == {f"key-{i}": f"answer {i}" for i in range(WORKERS)}
        (mode,) = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"


def test_prepare_twice_is_harmless_and_keeps_entries(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    cache = RequestCache(path)
    cache.put_many([("k", _done("kept"), None)])
    RequestCache.prepare(path)  # while a connection is open, as a second run's engine would
    assert cache.get_many(["k"])["k"].text == "kept"
    cache.close()


class _Named:
    model_id, revision = "m", None


def test_unseeded_sampling_has_no_key_and_seeded_sampling_does() -> None:
    messages = [{"role": "user", "content": "hello"}]
    unseeded = ChatRequest(messages=messages, params=GenerationParams(temperature=0.7))
    seeded = ChatRequest(messages=messages, params=GenerationParams(temperature=0.7, seed=3))
    greedy = ChatRequest(messages=messages, params=GenerationParams(temperature=0.0))
    assert request_key(_Named(), "transformers", unseeded) is None
    assert request_key(_Named(), "transformers", seeded) is not None
    assert request_key(_Named(), "transformers", greedy) != request_key(_Named(), "openai", greedy)


def test_keys_follow_a_local_model_folders_content_and_the_prefill_mode(tmp_path: Path) -> None:
    from factory.backends.request_cache import CachedBackend
    from schemas.generation import BackendSpec

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "model.safetensors").write_bytes(b"\0" * (4 << 20))  # large: sampled, not read whole
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}], params=GenerationParams())
    cache = RequestCache(tmp_path / "c.sqlite")

    def key(**spec: object) -> str | None:
        backend = CachedBackend(lambda: None, BackendSpec.model_validate(spec), cache)  # type: ignore[arg-type, return-value]
        return request_key(backend, backend.kind, request, backend.rendering)

    local = {"kind": "transformers", "model": str(model)}
    before = key(**local)
    assert key(**local) == before
    with (model / "model.safetensors").open("r+b") as fh:  # same size, new weights (a fine-tune)
        fh.seek(3 << 20)
        fh.write(b"\1" * 16)
    assert key(**local) != before
    assert key(**local, revision="v1") != key(**local)

    served = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    assert key(**served) != key(**served, prefill_mode="completions", tokenizer=str(model))
    cache.close()


def test_each_answer_is_stored_with_its_request_for_replay(tmp_path: Path) -> None:
    prefill = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Well,"}]
    asked = ChatRequest(messages=prefill, params=GenerationParams(max_new_tokens=5), close_final_turn=True)
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put_many([("a", _done("one"), asked), ("b", _done("two"), None)])
    assert cache.get_many(["a"])["a"].text == "one"
    assert cache.requests() == [asked]
    cache.close()
