"""The OpenAI-compatible backend against a real local server serving the bundled model."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from factory.backends import ChatRequest, Completion, create_backend
from factory.backends.chat import render_prompt
from factory.backends.openai_backend import OpenAIBackend
from factory.backends.transformers_backend import TransformersBackend
from factory.core.errors import UserError
from schemas.generation import BackendSpec, GenerationParams
from tests.support.openai_server import OpenAITestServer

pytestmark = pytest.mark.slow

SHORT = GenerationParams(max_new_tokens=4)
PREFILL = "Sure, I can help you with that, but I must advise you that"
KEY = "sk-test-0123456789abcdef"


def ask(text: str, prefill: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": text}]
    if prefill is not None:
        messages.append({"role": "assistant", "content": prefill})
    return messages


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersBackend]:
    backend = TransformersBackend(BackendSpec(kind="transformers", model="bundled", batch_size=1))
    yield backend
    backend.close()


@pytest.fixture
def server(model: TransformersBackend) -> Iterator[OpenAITestServer]:
    with OpenAITestServer(model) as running:
        yield running


def client(url: str | list[str], **fields: object) -> OpenAIBackend:
    """A backend with quick retries; `fields` override BackendSpec fields."""
    spec = BackendSpec.model_validate(
        {"kind": "openai", "base_url": url, "api_key_env": "SAFEPREF_TEST_KEY"} | fields
    )
    return OpenAIBackend(spec, backoff_base_s=0.01)


def free_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more


def test_plain_chat_request(server: OpenAITestServer) -> None:
    backend = create_backend(
        BackendSpec(kind="openai", base_url=server.url, model="bundled", api_key_env="SAFEPREF_TEST_KEY")
    )
    [completion] = backend.generate([ChatRequest(ask("Name a colour."), SHORT)])
    backend.close()
    assert completion.error is None and completion.text.strip()
    assert completion.prompt_tokens > 0 and 1 <= completion.completion_tokens <= 4
    [entry] = server.log
    assert entry.path == "/v1/chat/completions"
    assert entry.body["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert entry.body["max_tokens"] == 4 and "continue_final_message" not in entry.body
    assert entry.prompt is not None and entry.prompt.endswith("<|im_start|>assistant\n")


def test_prefill_in_both_modes_continues_the_same_open_turn(server: OpenAITestServer) -> None:
    messages = ask("How do I get back at a rude neighbour?", PREFILL)
    [chat] = client(server.url).generate([ChatRequest(messages, SHORT)])
    [completions] = client(server.url, prefill_mode="completions", tokenizer="bundled").generate(
        [ChatRequest(messages, SHORT)]
    )
    first, second = server.log
    assert first.path == "/v1/chat/completions"
    assert first.body["continue_final_message"] is True and first.body["add_generation_prompt"] is False
    assert second.path == "/v1/completions" and second.body["prompt"].endswith(
        "<|im_start|>assistant\n" + PREFILL
    )
    assert first.prompt == second.prompt == render_prompt(server.backend.tokenizer, messages)
    assert chat.error is None and chat.text.strip()
    assert (chat.text, chat.prompt_tokens) == (completions.text, completions.prompt_tokens)


def test_seeded_sampling_is_reproducible_through_the_server(server: OpenAITestServer) -> None:
    params = GenerationParams(max_new_tokens=6, temperature=1.0, seed=5)
    owls = ChatRequest(ask("Tell me about owls."), params)
    first, again = client(server.url).generate([owls, owls])
    client(server.url).generate([ChatRequest(ask("Tell me about cats."), params)])
    sent = [entry.body["seed"] for entry in server.log]
    assert sent[0] == sent[1] != sent[2]  # derived per request from the recipe seed and the prompt
    assert first.error is None and first.text == again.text


def test_transient_503s_and_429s_are_retried(server: OpenAITestServer) -> None:
    server.inject("status", times=2, status=503)
    server.inject("status", times=1, status=429, retry_after=0)
    server.inject("drop", times=1)
    [completion] = client(server.url, max_retries=4).generate([ChatRequest(ask("Hi."), SHORT)])
    assert completion.error is None and completion.text.strip()
    assert [e.status for e in server.log] == [503, 503, 429, None, 200]


def test_retry_after_is_honoured(server: OpenAITestServer) -> None:
    server.inject("status", times=1, status=429, retry_after=0.4)
    [completion] = client(server.url).generate([ChatRequest(ask("Hi."), SHORT)])
    assert completion.error is None
    throttled, served = server.log
    assert served.received_at - throttled.received_at >= 0.4  # a lower bound: the client waited


def test_a_permanently_failing_request_returns_an_error_not_an_exception(server: OpenAITestServer) -> None:
    server.inject("status", times=100, status=503, match="poison")
    requests = [ChatRequest(ask("Hi."), SHORT), ChatRequest(ask("poison"), SHORT)]
    ok, bad = client(server.url, max_retries=2).generate(requests)
    assert ok.error is None and ok.text.strip()
    assert bad.text == "" and bad.error is not None
    assert "3 attempt" in bad.error and "503" in bad.error
    assert bad.raw is not None and "injected failure" in bad.raw
    assert sum(e.fault == "status" for e in server.log) == 3


def test_a_request_in_its_backoff_makes_no_further_attempt_once_the_stream_is_closed(
    server: OpenAITestServer,
) -> None:
    server.inject("status", times=100, status=503, match="poison")
    server.inject("canned", times=1, match="Hi.")
    spec = BackendSpec(kind="openai", base_url=server.url, max_concurrency=2, max_retries=3)
    backend = OpenAIBackend(spec, backoff_base_s=30.0)  # a retry would wait 15-30 s, then 30 s
    before = set(threading.enumerate())
    stream = backend.stream([ChatRequest(ask("Hi."), SHORT), ChatRequest(ask("poison"), SHORT)])
    index, answer = next(stream)
    assert index == 0 and answer.error is None
    while not any("poison" in json.dumps(e.body) for e in server.log):  # its first attempt failed
        time.sleep(0.01)
    workers = [t for t in threading.enumerate() if t.name == "openai-backend" and t not in before]
    stream.close()  # the caller stops reading (a stop, Ctrl-C): the poisoned request is backing off
    for worker in workers:
        worker.join()  # at once; it slept through its retries (over a minute) before
    assert sum("poison" in json.dumps(e.body) for e in server.log) == 1
    backend.close()


def test_client_errors_are_not_retried(server: OpenAITestServer) -> None:
    server.inject("status", times=1, status=400)
    [completion] = client(server.url).generate([ChatRequest(ask("Hi."), SHORT)])
    assert completion.error is not None and completion.error.startswith("HTTP 400")
    assert len(server.log) == 1


@pytest.mark.parametrize(("fault", "error"), [("malformed", "malformed response"), ("empty", None)])
def test_unusable_bodies_are_retried_then_reported_with_the_raw_body(
    server: OpenAITestServer, fault: str, error: str | None
) -> None:
    server.inject(fault)  # once: the retry gets a good answer
    [recovered] = client(server.url).generate([ChatRequest(ask("Hi."), SHORT)])
    assert recovered.error is None and recovered.text and len(server.log) == 2
    server.reset()
    server.inject(fault, times=10)  # every attempt: give up with the last raw body
    [completion] = client(server.url, max_retries=2).generate([ChatRequest(ask("Hi."), SHORT)])
    assert completion.raw is not None and '"choices"' in completion.raw
    assert len(server.log) == 3
    if fault == "empty":  # an answer that stays empty is that (empty) answer, as from the in-process backends
        assert completion.error is None and completion.empty
    else:
        assert completion.error is not None and completion.error.startswith("gave up after 3 attempt(s)")
        assert error is not None and error in completion.error and not completion.empty


def test_a_timeout_is_retried_then_reported(server: OpenAITestServer) -> None:
    server.inject("hang", times=1, hang_s=3.0)
    server.inject("canned", times=1)  # the retry is answered without generating: no race with 0.5 s
    [recovered] = client(server.url, timeout_s=0.5).generate([ChatRequest(ask("Hi."), SHORT)])
    assert recovered.error is None and recovered.text == "canned reply" and len(server.log) == 2
    server.inject("hang", times=1, hang_s=3.0)
    [timed_out] = client(server.url, timeout_s=0.5, max_retries=0).generate([ChatRequest(ask("Hi."), SHORT)])
    assert timed_out.error is not None and "ReadTimeout" in timed_out.error


def test_concurrency_is_bounded(model: TransformersBackend) -> None:
    with OpenAITestServer(model, latency_s=0.3) as slow:
        requests = [
            ChatRequest(ask(f"Say the number {i}."), GenerationParams(max_new_tokens=1)) for i in range(6)
        ]
        completions = client(slow.url, max_concurrency=2).generate(requests)
        assert all(c.error is None for c in completions)
        assert len(slow.log) == 6
        assert slow.max_in_flight == 2


def test_replicas_share_the_load_with_bounded_concurrency_per_replica(model: TransformersBackend) -> None:
    with OpenAITestServer(model, latency_s=0.2) as a, OpenAITestServer(model, latency_s=0.2) as b:
        requests = [ChatRequest(ask("Hi."), GenerationParams(max_new_tokens=1)) for _ in range(8)]
        completions = client([a.url, b.url], max_concurrency=2).generate(requests)
        assert all(c.error is None for c in completions)
        assert len(a.log) + len(b.log) == 8 and len(a.log) >= 2 and len(b.log) >= 2
        assert a.max_in_flight == 2 and b.max_in_flight == 2  # per replica, not in all


def test_a_dead_replica_is_skipped_until_its_cooldown_ends(model: TransformersBackend) -> None:
    with OpenAITestServer(model) as a:
        dead = free_port_url()
        requests = [ChatRequest(ask("Hi."), GenerationParams(max_new_tokens=1)) for _ in range(4)]
        backend = client([dead, a.url], max_concurrency=1, replica_cooldown_s=60)
        assert all(c.error is None for c in backend.generate(requests))
        assert len(a.log) == 4 and backend.unavailable() == [dead]  # its request was retried on `a`
        assert all(c.error is None for c in backend.generate(requests))
        assert len(a.log) == 8 and backend.unavailable() == [dead]
        again = client([dead, a.url], max_concurrency=1, replica_cooldown_s=0)
        assert all(c.error is None for c in again.generate(requests))
        assert again.unavailable() == []  # no cooldown: tried again on every pick, still no failures


def test_an_unreachable_server_gives_errors(model: TransformersBackend) -> None:
    [completion] = client(free_port_url(), max_retries=1).generate([ChatRequest(ask("Hi."), SHORT)])
    assert completion.error is not None and "ConnectError" in completion.error


def test_the_api_key_is_sent_but_never_shown(
    model: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFEPREF_TEST_KEY", KEY)
    with OpenAITestServer(model, api_key=KEY) as good:
        [ok] = client(good.url).generate([ChatRequest(ask("Hi."), SHORT)])
        assert ok.error is None and good.log[0].authorization == f"Bearer {KEY}"
    with OpenAITestServer(model, api_key="another-key") as wrong:  # its 401 body echoes the key it got
        backend = client(wrong.url)
        # a refused key fails every request alike: it stops the caller instead of failing one request
        with pytest.raises(UserError) as denied:
            backend.generate([ChatRequest(ask("Hi."), SHORT)])
        assert [e.status for e in wrong.log] == [401]  # not retried
    assert str(denied.value).startswith("backend: HTTP 401") and "SAFEPREF_TEST_KEY" in str(denied.value)
    shown = " ".join([str(denied.value), repr(backend), repr(backend.__dict__)])
    assert KEY not in shown and "***" in str(denied.value)


def test_no_key_no_authorization_header(server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFEPREF_TEST_KEY", raising=False)
    client(server.url).generate([ChatRequest(ask("Hi."), SHORT)])
    assert server.log[0].authorization is None


def test_bad_messages_fail_alone_without_a_request(server: OpenAITestServer) -> None:
    completions: list[Completion] = client(server.url).generate(
        [ChatRequest([{"role": "robot", "content": "x"}], SHORT), ChatRequest(ask("Hi."), SHORT)]
    )
    assert completions[0].error is not None and "role" in completions[0].error
    assert completions[1].error is None and len(server.log) == 1


@pytest.mark.parametrize("url", ["ftp://example.org/v1", "http://user:pw@127.0.0.1:8000/v1", "not a url"])
def test_a_bad_base_url_is_rejected_without_repeating_it(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url") as rejected:
        BackendSpec(kind="openai", base_url=url)
    assert "pw" not in rejected.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("server_kind", "expected"),
    [
        ("vllm", {"use_beam_search": True, "n": 2}),
        ("transformers", {"generation_config": '{"num_beams": 2}'}),
    ],
)
def test_beam_search_is_asked_for_in_the_servers_own_form(
    server: OpenAITestServer, model: TransformersBackend, server_kind: str, expected: dict[str, object]
) -> None:
    import torch

    beams = GenerationParams(max_new_tokens=6, num_beams=2)
    backend = client(server.url, model="bundled", server=server_kind, generation=beams.model_dump())
    [completion] = backend.generate([ChatRequest(ask("Name a colour."), beams)])
    backend.close()
    [entry] = server.log
    assert {k: entry.body.get(k) for k in expected} == expected
    # the text is the model's own 2-beam search (transformers generate, called directly)
    tok = model.tokenizer
    prompt = tok.apply_chat_template(ask("Name a colour."), add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.model.generate(**ids, num_beams=2, do_sample=False, max_new_tokens=6)
    direct = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert completion.error is None and completion.text.strip() == direct.strip()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"},
            "needs `server: vllm` or `server: transformers`",
        ),
        ({"kind": "vllm"}, "in-process vllm backend does not run beam search"),
        (
            {"kind": "transformers", "generation": {"num_beams": 2, "num_beam_groups": 2}},
            "runs on no backend",
        ),
        ({"kind": "transformers", "generation": {"num_beams": 2, "temperature": 0.7}}, "set temperature: 0"),
    ],
)
def test_beam_settings_a_backend_cannot_run_are_refused(fields: dict[str, object], message: str) -> None:
    body = {"generation": {"num_beams": 2}} | fields
    with pytest.raises(ValidationError, match=message):
        BackendSpec.model_validate(body)
    assert (
        BackendSpec(kind="transformers", generation=GenerationParams(num_beams=2)).generation.num_beams == 2
    )


def test_ctrl_c_reaches_a_stream_waiting_on_a_held_answer_whichever_thread_gets_the_signal() -> None:
    """The kernel may deliver a process-directed SIGINT to any thread; Python acts on it only when the
    main thread runs Python again. A stream waiting for an answer that does not come must still raise
    KeyboardInterrupt (an eval waiting on a held judge request once ignored Ctrl-C this way)."""
    import signal
    import threading

    from tests.support.held_server import HeldServer

    raised: list[int] = []

    def interrupt_once(signum: int, frame: object) -> None:
        # CPython drops an exception a signal handler raises while the main thread runs a finalizer
        # (`__del__`), so the other thread signals until one lands; only the first one raises, the
        # rest (and any left pending) are ignored, so none reaches pytest
        if not raised:
            raised.append(signum)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt_once)
    try:
        with HeldServer() as held:
            held.answer_first(0)
            backend = OpenAIBackend(
                BackendSpec(kind="openai", model="m", base_url=held.url, max_concurrency=1)
            )
            interrupted, answered_anyway = threading.Event(), threading.Event()

            def interrupt_from_another_thread() -> None:
                if held.holding.wait(120):
                    for _ in range(60):  # this thread takes each signal
                        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
                        if interrupted.wait(0.5):
                            return
                # a safety net against a hang: without the fix the main thread waits for this answer
                answered_anyway.set()
                held.release()

            sender = threading.Thread(target=interrupt_from_another_thread, daemon=True)
            sender.start()
            answers = backend.stream([ChatRequest(messages=ask("Hello"), params=SHORT)])
            try:
                with pytest.raises(KeyboardInterrupt):
                    list(answers)
                interrupted.set()
                assert not answered_anyway.is_set(), "Ctrl-C was acted on only once the held answer came"
            finally:
                interrupted.set()
                held.release()
                backend.close()
                sender.join()
    finally:
        signal.signal(signal.SIGINT, previous)
