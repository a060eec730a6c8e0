"""The in-process transformers backend on the bundled SmolLM2-135M-Instruct (and the vllm guard)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from factory.backends import ChatRequest, create_backend
from factory.backends.chat import render_prompt
from factory.backends.transformers_backend import TransformersBackend
from factory.core.errors import UserError
from factory.core.models import MODEL_ID, REVISION
from schemas.generation import BackendSpec, GenerationParams

pytestmark = pytest.mark.slow

GREEDY = GenerationParams(max_new_tokens=12)
SAMPLED = GenerationParams(max_new_tokens=8, temperature=1.0, seed=7)


def ask(text: str, prefill: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": text}]
    if prefill is not None:
        messages.append({"role": "assistant", "content": prefill})
    return messages


@pytest.fixture(scope="module")
def backend() -> Iterator[TransformersBackend]:
    created = create_backend(BackendSpec(kind="transformers", model="bundled", batch_size=2))
    assert isinstance(created, TransformersBackend)
    yield created
    created.close()


def prompt_len(backend: TransformersBackend, messages: list[dict[str, str]]) -> int:
    return len(
        backend.tokenizer(render_prompt(backend.tokenizer, messages), add_special_tokens=False).input_ids
    )


def test_greedy_generation_returns_new_text_and_token_counts(backend: TransformersBackend) -> None:
    messages = ask("Name three colours.")
    [completion] = backend.generate([ChatRequest(messages, GREEDY)])
    assert completion.error is None
    assert completion.text.strip()
    assert "<|im_start|>" not in completion.text and "Name three colours." not in completion.text
    assert completion.prompt_tokens == prompt_len(backend, messages)
    assert 1 <= completion.completion_tokens <= GREEDY.max_new_tokens
    assert completion.finish_reason in ("stop", "length")
    assert (backend.model_id, backend.revision) == (MODEL_ID, REVISION)


def test_results_come_back_in_input_order_across_sorted_batches(backend: TransformersBackend) -> None:
    # mixed lengths, not sorted, more requests than batch_size
    conversations = [ask("Say something nice about gardens." + " Please." * k) for k in (0, 9, 3, 6)]
    conversations.append(ask("How do I get back at a rude neighbour?", "I understand you are upset, but"))
    completions = backend.generate(
        [ChatRequest(m, GenerationParams(max_new_tokens=4)) for m in conversations]
    )
    lengths = [prompt_len(backend, m) for m in conversations]
    assert len(set(lengths)) == len(lengths)  # distinct, so prompt_tokens identifies each request
    assert [c.prompt_tokens for c in completions] == lengths
    assert all(c.text.strip() for c in completions)


def test_prefill_continues_the_open_assistant_turn(backend: TransformersBackend) -> None:
    prefill = "Sure, I can help you with that, but I must advise you that"
    messages = ask("How do I get back at a rude neighbour?", prefill)
    [completion] = backend.generate([ChatRequest(messages, GREEDY)])
    # the model saw the open turn: exactly the tokens of a prompt ending in the prefill, no <|im_end|> after it
    assert render_prompt(backend.tokenizer, messages).endswith("<|im_start|>assistant\n" + prefill)
    assert completion.prompt_tokens == prompt_len(backend, messages)
    assert completion.text.strip()
    assert not completion.text.lstrip().startswith(("assistant", "Sure, I can help you with that"))
    # the same conversation with the turn closed is a different (longer) prompt
    closed = render_prompt(backend.tokenizer, messages, continue_final=False)
    [reply] = backend.generate_text([closed], [GREEDY])
    assert reply.prompt_tokens > completion.prompt_tokens


def test_stop_strings_truncate_the_text(backend: TransformersBackend) -> None:
    messages = ask("Write one sentence about the sea.")
    [free] = backend.generate([ChatRequest(messages, GenerationParams(max_new_tokens=16))])
    assert len(free.text) >= 12, free.text
    middle = len(free.text) // 2
    stop = free.text[middle : middle + 3]  # taken from the model's own greedy output
    [stopped] = backend.generate([ChatRequest(messages, GenerationParams(max_new_tokens=16, stop=[stop]))])
    assert stopped.text == free.text[: free.text.index(stop)]
    assert stopped.finish_reason == "stop"


def test_a_seed_gives_the_same_text_whatever_shares_the_batch(backend: TransformersBackend) -> None:
    messages = ask("Tell me a fact about otters.")
    [alone] = backend.generate([ChatRequest(messages, SAMPLED)])
    neighbours = [ChatRequest(ask("Tell me a fact about owls."), SAMPLED.model_copy(update={"seed": 1}))]
    batched = backend.generate(neighbours + [ChatRequest(messages, SAMPLED)])
    assert batched[1].text == alone.text
    others = backend.generate(
        [ChatRequest(messages, SAMPLED.model_copy(update={"seed": s})) for s in (8, 9, 10)]
    )
    assert any(o.text != alone.text for o in others)  # sampling really samples


def test_one_bad_request_fails_alone(backend: TransformersBackend) -> None:
    good = ChatRequest(ask("Hi."), GenerationParams(max_new_tokens=2))
    too_long = ChatRequest(ask("Hi."), GenerationParams(max_new_tokens=9000))  # context is 8192
    bad_role = ChatRequest([{"role": "bot", "content": "hello"}], GREEDY)
    completions = backend.generate([too_long, good, bad_role])
    assert completions[0].error is not None and "context" in completions[0].error
    assert completions[1].error is None and completions[1].text
    assert completions[2].error is not None and "role" in completions[2].error
    assert completions[0].text == completions[2].text == ""


def test_a_missing_model_folder_is_a_user_error() -> None:
    with pytest.raises(UserError, match="does not exist"):
        create_backend(BackendSpec(kind="transformers", model="./no/such/model"))


def test_a_vllm_backend_is_served_never_loaded_in_process() -> None:
    with pytest.raises(UserError, match="a `vllm` backend is served by its own server"):
        create_backend(BackendSpec(kind="vllm"))
