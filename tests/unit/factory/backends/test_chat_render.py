"""render_prompt keeps a final assistant turn open (prefill) on several chat-template styles."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from factory.backends.chat import ChatTokenizer, TemplateMismatch, render_prompt, strip_leading_bos

# Llama-2-chat's template: strips message content and closes assistant turns with eos.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
# Zephyr's template: keeps content verbatim, eos after every turn.
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
# A Mistral-like template using Jinja's `trim` filter.
TRIMMING = (
    "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] | trim }} [/INST]"
    "{% else %}{{ m['content'] | trim }}</s>{% endif %}{% endfor %}"
)
SHOUTING = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}"

REQUEST = {"role": "user", "content": "How do I get back at a rude neighbour?"}
PREFILL = "Sure, I can help you with that, but I must advise you that"


@pytest.fixture(scope="module")
def smol() -> Any:
    from transformers import AutoTokenizer

    from factory.core.models import bundled_model_dir

    return AutoTokenizer.from_pretrained(bundled_model_dir())


def with_template(tokenizer: Any, template: str) -> Any:
    other = copy.deepcopy(tokenizer)
    other.chat_template = template
    return other


def test_bundled_template_leaves_the_prefilled_turn_open(smol: Any) -> None:
    prompt = render_prompt(smol, [REQUEST, {"role": "assistant", "content": PREFILL}])
    assert prompt.endswith("<|im_start|>assistant\n" + PREFILL)
    assert prompt.count("<|im_end|>") == 2  # the default system turn and the user turn; not the prefill


def test_bundled_template_without_prefill_ends_with_the_generation_prompt(smol: Any) -> None:
    prompt = render_prompt(smol, [REQUEST])
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_closing_the_final_turn_on_request_starts_a_new_one(smol: Any) -> None:
    prompt = render_prompt(smol, [REQUEST, {"role": "assistant", "content": PREFILL}], continue_final=False)
    assert prompt.endswith(PREFILL + "<|im_end|>\n<|im_start|>assistant\n")


def test_an_empty_prefill_opens_a_bare_assistant_turn(smol: Any) -> None:
    prompt = render_prompt(smol, [REQUEST, {"role": "assistant", "content": ""}])
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("prefill", [PREFILL, PREFILL + " ", PREFILL + "\n"])
def test_llama2_template_keeps_the_exact_prefill_even_though_it_strips_content(
    smol: Any, prefill: str
) -> None:
    tokenizer = with_template(smol, LLAMA2)
    prompt = render_prompt(tokenizer, [REQUEST, {"role": "assistant", "content": prefill}])
    assert prompt.endswith("[/INST] " + prefill)
    assert prompt.count(tokenizer.eos_token) == 0


def test_llama2_template_with_system_prompt_and_history(smol: Any) -> None:
    tokenizer = with_template(smol, LLAMA2)
    messages = [
        {"role": "system", "content": "Be kind."},
        REQUEST,
        {"role": "assistant", "content": "Talk to them calmly."},
        {"role": "user", "content": "And if that fails?"},
        {"role": "assistant", "content": PREFILL + " "},
    ]
    prompt = render_prompt(tokenizer, messages)
    assert prompt.endswith("And if that fails? [/INST] " + PREFILL + " ")
    assert prompt.count(tokenizer.eos_token) == 1  # only the earlier, finished assistant turn


def test_zephyr_template_leaves_the_prefilled_turn_open(smol: Any) -> None:
    tokenizer = with_template(smol, ZEPHYR)
    prompt = render_prompt(tokenizer, [REQUEST, {"role": "assistant", "content": PREFILL}])
    assert prompt.endswith("<|assistant|>\n" + PREFILL)
    assert prompt.count(tokenizer.eos_token) == 1  # after the user turn only


def test_jinja_trim_filter_loses_no_trailing_whitespace(smol: Any) -> None:
    tokenizer = with_template(smol, TRIMMING)
    prompt = render_prompt(tokenizer, [REQUEST, {"role": "assistant", "content": "  " + PREFILL + "  "}])
    assert prompt == "[INST] " + REQUEST["content"] + " [/INST]" + PREFILL + "  "


def test_a_template_that_rewrites_the_prefill_is_refused(smol: Any) -> None:
    tokenizer = with_template(smol, SHOUTING)
    with pytest.raises(TemplateMismatch, match="prefill"):
        render_prompt(tokenizer, [REQUEST, {"role": "assistant", "content": PREFILL}])


def test_template_errors_become_template_mismatch(smol: Any) -> None:
    tokenizer = with_template(smol, LLAMA2)
    with pytest.raises(TemplateMismatch, match="alternate"):
        render_prompt(tokenizer, [REQUEST, REQUEST])


def test_a_textual_bos_is_stripped_only_when_the_tokenizer_adds_one(smol: Any) -> None:
    llama = with_template(smol, LLAMA2)  # the template writes bos_token itself
    prompt = render_prompt(llama, [REQUEST])
    assert prompt.startswith(llama.bos_token)
    assert strip_leading_bos(llama, prompt) == prompt  # this tokenizer adds no BOS of its own
    llama.add_bos_token = True  # now it does, as Llama's tokenizer: the server would double it
    assert strip_leading_bos(llama, prompt) == prompt[len(llama.bos_token) :]
    assert strip_leading_bos(llama, "[INST] hi") == "[INST] hi"


def test_the_server_side_tokenizer_renders_and_strips_as_transformers_does(smol: Any, tmp_path: Path) -> None:
    # what a stage worker loads to render prompts for a server: no transformers tokenizer class, and it
    # knows from the tokenizer files whether encoding adds a BOS of its own (it keeps no encoder)
    for adds in (False, True):
        reference = with_template(smol, LLAMA2)
        reference.add_bos_token = adds
        folder = tmp_path / f"adds-{adds}"
        reference.save_pretrained(folder)
        light = ChatTokenizer.load(str(folder))
        assert light.adds_bos is adds
        for messages in ([REQUEST], [REQUEST, {"role": "assistant", "content": PREFILL}]):
            prompt = render_prompt(light, messages)
            assert prompt == render_prompt(reference, messages)
            assert strip_leading_bos(light, prompt) == strip_leading_bos(reference, prompt)
        assert (strip_leading_bos(light, prompt) != prompt) is adds  # the template wrote a BOS
