"""Any OpenAI-compatible server (`vllm serve`, llama.cpp, SGLang, hosted) over httpx.

`base_url` may list replicas: requests go round-robin to a replica with a free slot, at most
`max_concurrency` in flight per replica; one that refuses a connection is skipped for
`replica_cooldown_s`, and the request is retried elsewhere. Connect errors, timeouts, 429, 5xx and
unusable 200 bodies (malformed or truncated JSON, no text, an empty completion) are retried with
exponential backoff and jitter (a `Retry-After` header wins); when the retries run out, or on any other
4xx, the request becomes a `Completion` with `error` and `raw` set, except that an answer that stayed
empty is returned as that (empty) answer.

Prefill: `prefill_mode: continue_final_message` relies on the vLLM/SGLang chat extension (servers that
ignore it, such as llama.cpp, silently close the turn); `prefill_mode: completions` renders the prompt
here with the model's tokenizer and works on any server with /v1/completions.

The API key is read from the env var named by `api_key_env`, lives only in the client's headers
(httpx masks them in its repr) and is scrubbed from every error and raw body we keep.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from factory.backends.base import (
    RAW_LIMIT,
    Admission,
    ChatRequest,
    Completion,
    ends_with_prefill,
    failed,
    in_order,
    message_problem,
    truncate_at_stop,
)
from factory.backends.chat import ChatTokenizer, TemplateMismatch, render_prompt, strip_leading_bos
from factory.core.errors import UserError
from factory.core.models import load_source, model_id, model_revision
from factory.core.retry import RetryPolicy
from factory.core.seeds import prompt_seed
from schemas.generation import BackendSpec, GenerationParams

_RETRYABLE_EXCEPTIONS = (httpx.TransportError,)  # connect/read/write/pool errors and timeouts
_CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)
_MAX_BACKOFF_S = 30.0
_SIGNAL_CHECK_S = 0.2  # how often a waiting main thread runs Python (and so a pending Ctrl-C)
_T = TypeVar("_T")


def _next_answer(answers: queue.SimpleQueue[_T]) -> _T:
    """The next answer, waiting in slices: a Ctrl-C that the kernel delivers to a worker thread (any
    thread of the process may get a process-directed signal) is only acted on when the main thread
    runs Python again, and a wait without a timeout would not return until an answer came (seen: an
    eval waiting on a held judge request ignored Ctrl-C and kept its model server alive)."""
    while True:
        try:
            return answers.get(timeout=_SIGNAL_CHECK_S)
        except queue.Empty:
            continue


class OpenAIBackend:
    """`kind: openai`. `backoff_base_s` is the first retry delay (doubled per attempt, jittered)."""

    def __init__(self, spec: BackendSpec, *, backoff_base_s: float = 0.5) -> None:
        urls = [spec.base_url] if isinstance(spec.base_url, str) else list(spec.base_url or [])
        self.base_urls = [u.rstrip("/") for u in urls]  # BackendSpec checked scheme and credentials
        self.spec = spec
        # a server's Retry-After is honoured up to one request's timeout; our own backoff up to 30 s
        self.retry = RetryPolicy(
            spec.max_retries + 1, backoff_base_s, _MAX_BACKOFF_S, retry_after_cap_s=spec.timeout_s
        )
        self.model_id = model_id(spec.model)
        self.revision = model_revision(spec.model, spec.revision)
        self.tokenizer: ChatTokenizer | None = None
        self._generation_defaults = (
            generation_defaults(spec.served_model_name or spec.model, spec.revision)
            if spec.extra_decoding == "generation_config"
            else {}
        )
        if spec.prefill_mode == "completions":
            self.tokenizer = _load_tokenizer(spec)
        # The key goes straight into httpx.Headers (repr shows "[secure]"); no local holds it.
        headers = httpx.Headers({"Content-Type": "application/json"})
        if os.environ.get(spec.api_key_env):
            headers["Authorization"] = "Bearer " + os.environ[spec.api_key_env]
        timeout = httpx.Timeout(spec.timeout_s, connect=min(spec.timeout_s, 10.0))
        connections = spec.max_concurrency * len(self.base_urls)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.Client(headers=headers, timeout=timeout, limits=limits)
        self._next_replica = itertools.count()
        self._lock = threading.Lock()
        self._slots = {u: threading.BoundedSemaphore(spec.max_concurrency) for u in self.base_urls}
        self._down_until: dict[str, float] = {}  # replica -> monotonic time it may be tried again
        self.in_flight = 0  # requests sent and not yet answered (shown on the progress line)

    def __repr__(self) -> str:
        return f"OpenAIBackend(model_id={self.model_id!r}, base_urls={self.base_urls!r})"

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return in_order(len(requests), self.stream(requests))

    def stream(
        self, requests: Sequence[ChatRequest], admission: Admission | None = None
    ) -> Iterator[tuple[int, Completion]]:
        """(index, completion) as each answer arrives. One worker thread per slot takes the next request
        the moment its answer is in, whatever the caller is doing with the answers (storing them,
        counting them), so the window stays full until the last requests drain."""
        if not requests:
            return
        answers: queue.SimpleQueue[tuple[int, Completion | BaseException]] = queue.SimpleQueue()
        order = iter(range(len(requests)))  # requests go out in order
        take = threading.Lock()
        closed = threading.Event()

        def work() -> None:
            while not closed.is_set():
                with take:
                    i = next(order, None)
                if i is None or (admission is not None and not admission.wait(i, closed)):
                    return
                try:
                    answers.put((i, self._complete(requests[i], closed)))
                except BaseException as exc:  # a refused key (UserError) or a bug: the caller raises it
                    answers.put((i, exc))
                    return

        slots = min(self.spec.max_concurrency * len(self.base_urls), len(requests))
        workers = [threading.Thread(target=work, name="openai-backend", daemon=True) for _ in range(slots)]
        for worker in workers:
            worker.start()
        try:
            for _ in requests:
                i, answer = _next_answer(answers)
                if isinstance(answer, BaseException):
                    raise answer
                yield i, answer
        finally:  # a caller that stops early (Ctrl-C, a stop) must not wait for requests nobody will
            # read: no unsent one goes out, the ones in flight end in their threads (at once when the
            # caller closes the client or stops the server, else by `timeout_s`)
            closed.set()

    def unavailable(self) -> list[str]:
        """Replicas skipped now because they refused a connection within `replica_cooldown_s`."""
        now = time.monotonic()
        with self._lock:
            return [u for u in self.base_urls if self._down_until.get(u, 0.0) > now]

    def close(self) -> None:
        self._client.close()

    # one request -----------------------------------------------------------------------------------

    def _complete(self, request: ChatRequest, closed: threading.Event) -> Completion:
        """One request, retried; once the stream is `closed` (nobody reads the answer) no new attempt
        is made and the backoff between attempts ends at once."""
        problem = message_problem(request.messages)
        if problem is not None:
            return failed(problem)
        try:
            path, body = self._payload(request)
        except TemplateMismatch as exc:  # the local chat template cannot render this conversation
            return failed(str(exc))
        last_error = "no attempt made"
        raw: str | None = None
        retry_after: str | None = None
        empty: Completion | None = None  # an empty answer: asked again, but the answer if it stays so
        failed_here: set[str] = set()  # replicas that failed this request: retry it elsewhere
        for attempt in range(self.spec.max_retries + 1):
            if attempt and closed.wait(self.retry.delay(attempt, retry_after)):
                return self._scrubbed(failed(f"stream closed after {attempt} attempt(s): {last_error}", raw))
            retry_after = None
            url = self._acquire_replica(failed_here)
            self._count_in_flight(+1)
            try:
                response = self._client.post(url + path, json=body)
            except _RETRYABLE_EXCEPTIONS as exc:
                if isinstance(exc, _CONNECT_FAILURES):
                    self._mark_down(url)
                last_error, raw = f"{type(exc).__name__} from {url}: {exc}", None
                failed_here.add(url)
                continue
            finally:
                self._count_in_flight(-1)
                self._slots[url].release()
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = response.headers.get("Retry-After")
                last_error, raw = f"HTTP {response.status_code} from {url}", response.text
                failed_here.add(url)
                continue
            if response.status_code in (401, 403):  # no request can succeed with this key: stop the run
                error = f"HTTP {response.status_code} from {url}: {_snippet(response.text)}"
                hint = f"check the key in ${self.spec.api_key_env}"
                raise UserError(f"{self._scrubbed(failed(error)).error} ({hint})", where="backend")
            if response.status_code >= 400:
                error = f"HTTP {response.status_code} from {url}: {_snippet(response.text)}"
                return self._scrubbed(failed(error, response.text))
            completion = _parse(response.text, path, request.params)
            if completion.error is None and not completion.empty:
                return self._scrubbed(completion)
            if completion.empty:
                empty = completion
            else:
                last_error, raw = f"{url} answered: {completion.error}", completion.raw  # unusable 200: retry
            failed_here.add(url)
        if empty is not None:
            return self._scrubbed(empty)
        attempts = self.spec.max_retries + 1
        return self._scrubbed(failed(f"gave up after {attempts} attempt(s): {last_error}", raw))

    def _payload(self, request: ChatRequest) -> tuple[str, dict[str, Any]]:
        params = request.params
        body: dict[str, Any] = {
            "model": self.spec.served_model_name or self.model_id,
            "max_tokens": params.max_new_tokens,
        }
        body["temperature"] = params.temperature
        body["top_p"] = params.top_p
        # non-standard fields are sent only when set: vLLM/SGLang/llama.cpp read them, others may reject them
        if self.spec.extra_decoding == "generation_config":
            body["generation_config"] = generation_config_field(self._generation_defaults, params)
        else:
            body.update(extra_decoding(params))
        if params.stop:
            body["stop"] = list(params.stop)
        if (params.num_beams or 1) > 1:  # the spec validated that this server can (beam_support_problem)
            if self.spec.server == "vllm":
                body["use_beam_search"], body["n"] = True, params.num_beams  # best beam is choices[0]
            else:  # beside the eos ids and extras already there
                config = {**json.loads(body.get("generation_config", "{}")), "num_beams": params.num_beams}
                body["generation_config"] = json.dumps(config)
        if self.tokenizer is not None:
            prompt = render_prompt(
                self.tokenizer, request.messages, continue_final=not request.close_final_turn
            )
            body["prompt"] = strip_leading_bos(self.tokenizer, prompt)
            if params.seed is not None:
                body["seed"] = prompt_seed(params.seed, body["prompt"])
            return "/completions", body
        body["messages"] = request.messages
        if params.seed is not None:
            body["seed"] = prompt_seed(params.seed, json.dumps(request.messages, ensure_ascii=False))
        if ends_with_prefill(request.messages) and not request.close_final_turn:
            body["continue_final_message"] = True  # vLLM/SGLang extension: keep the assistant turn open
            body["add_generation_prompt"] = False
        return "/chat/completions", body

    def _acquire_replica(self, failed_here: set[str]) -> str:
        """Take a slot on the next replica (round-robin) that is up, has not failed this request and
        has a free slot; wait for the first in turn when all are busy. The caller releases the slot."""
        now = time.monotonic()
        with self._lock:
            up = [u for u in self.base_urls if self._down_until.get(u, 0.0) <= now] or self.base_urls
            up = [u for u in up if u not in failed_here] or up
            start = next(self._next_replica)
            order = [up[(start + i) % len(up)] for i in range(len(up))]
        for url in order:
            if self._slots[url].acquire(blocking=False):
                return url
        self._slots[order[0]].acquire()
        return order[0]

    def _count_in_flight(self, change: int) -> None:
        with self._lock:
            self.in_flight += change

    def _mark_down(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + self.spec.replica_cooldown_s

    def _scrubbed(self, completion: Completion) -> Completion:
        key = os.environ.get(self.spec.api_key_env)
        if key:
            if completion.error:
                completion.error = completion.error.replace(key, "***")
            if completion.raw:
                completion.raw = completion.raw.replace(key, "***")
        return completion


def generation_defaults(model: str, revision: str | None = None) -> dict[str, Any]:
    """The model's own end-of-sequence ids, for a `generation_config` request field: transformers serve
    builds a request's GenerationConfig from that field alone, and without eos ids generation never
    stops before max_tokens (seen: "`eos_token_id` not set ... disabled")."""
    source = Path(load_source(model)).expanduser()
    files = [source / "generation_config.json", source / "config.json"] if source.is_dir() else []
    if not files:  # a Hub id: its files in the local cache (offline runs have them there)
        from huggingface_hub import try_to_load_from_cache

        for name in ("generation_config.json", "config.json"):
            try:
                found = try_to_load_from_cache(model, name, revision=revision)
            except ValueError:  # a served name that is no Hub id: the server's own defaults apply
                break
            if isinstance(found, str):
                files.append(Path(found))
    for path in files:
        try:
            eos = json.loads(path.read_text()).get("eos_token_id")
        except (OSError, ValueError):
            continue
        if eos is not None:
            return {"eos_token_id": eos}
    return {}


def extra_decoding(params: GenerationParams) -> dict[str, Any]:
    """The decoding settings beyond the OpenAI API's that are set (GenerationConfig field names)."""
    extras = {"top_k": params.top_k, "repetition_penalty": params.repetition_penalty}
    return {k: v for k, v in extras.items() if v is not None}


def generation_config_field(defaults: dict[str, Any], params: GenerationParams) -> str:
    """The `generation_config` JSON that transformers serve builds a request's GenerationConfig from:
    the model's eos ids, the extras, and `do_sample` when the request samples. The field alone decides
    sampling: a temperature above 0 without `do_sample` decodes greedily (seen: 4 identical samples)."""
    sampling = {"do_sample": True} if params.temperature > 0 else {}
    return json.dumps({**defaults, **extra_decoding(params), **sampling})


def _parse(text: str, path: str, params: GenerationParams) -> Completion:
    try:
        data = json.loads(text)
        choice = data["choices"][0]
        content = choice["text"] if path == "/completions" else choice["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        return failed(f"malformed response ({type(exc).__name__}: {exc})", text)
    if not isinstance(content, str):
        return failed("response has no text content", text)
    usage = data.get("usage") or {}
    content, stopped = truncate_at_stop(content, params.stop)  # some servers return the stop string
    finish = choice.get("finish_reason")
    completion = Completion(
        text=content,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason="stop" if stopped else finish,
    )
    if completion.empty:
        completion.raw = text[:RAW_LIMIT]  # the server's body, for a row quarantined for want of text
    return completion


def _snippet(body: str) -> str:
    line = body.strip().splitlines()[0] if body.strip() else "(empty body)"
    return line[:200]


def _load_tokenizer(spec: BackendSpec) -> ChatTokenizer:
    name = spec.tokenizer or spec.model
    source = load_source(name)
    try:
        return ChatTokenizer.load(source, revision=None if name == "bundled" else spec.revision)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise UserError(
            f"prefill_mode completions: cannot load tokenizer {name!r}: {first}", where="backend"
        ) from exc
