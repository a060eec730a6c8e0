"""Chat-template rendering shared by every backend (and by evaluation code).

A final `assistant` message is a prefill: the rendered prompt leaves that turn OPEN (no end-of-turn
token after it), so the model continues the text (`continue_final_message=True,
add_generation_prompt=False`). Otherwise the prompt ends with the template's generation prompt.

Whitespace: templates that `trim` message content (Llama-2, Mistral, ...) drop the prefill's trailing
whitespace, and transformers then cuts the rendered prompt before it. We put that whitespace back, so a
rendered prompt always ends with the prefill text exactly as given and `prefill + completion.text` is
exactly the assistant text the model produced. (A trailing space usually hurts BPE models, which fold
the space into the next word's token: end prefills without one.) Leading whitespace is the template's
business (most insert their own separator after the role header).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.backends.base import ends_with_prefill


class TemplateMismatch(ValueError):
    """The chat template cannot render this conversation (or cannot keep the prefill turn open)."""


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]], *, continue_final: bool = True) -> str:
    """The prompt text for `messages`; an assistant-final conversation stays open when `continue_final`.

    `continue_final=False` closes a final assistant turn and opens a new one (the behaviour of an
    OpenAI-compatible server without `continue_final_message`).
    """
    from jinja2 import TemplateError

    if getattr(tokenizer, "chat_template", None) is None:
        raise TemplateMismatch("the tokenizer has no chat template")
    prefill = ends_with_prefill(messages) and continue_final
    try:
        rendered = tokenizer.apply_chat_template(
            list(messages),
            tokenize=False,
            continue_final_message=prefill,
            add_generation_prompt=not prefill,
        )
    except TemplateError as exc:
        raise TemplateMismatch(f"chat template failed: {str(exc).splitlines()[0]}") from exc
    except ValueError as exc:  # transformers: the template drops or rewrites the final message
        what = "cannot keep the prefill open" if prefill else "failed"
        raise TemplateMismatch(f"chat template {what}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(rendered, str):  # some tokenizers return a one-element list
        rendered = rendered[0]
    if prefill:
        rendered = _restore_prefill_tail(rendered, messages[-1]["content"])
    return rendered


def _restore_prefill_tail(rendered: str, prefill: str) -> str:
    if rendered.endswith(prefill):
        return rendered
    if rendered.endswith(prefill.strip()):  # the template trimmed the content: put the trailing part back
        return rendered + prefill[len(prefill.rstrip()) :]
    raise TemplateMismatch(
        "the chat template rewrites the final assistant message, so the prefill cannot be continued verbatim"
    )


def strip_leading_bos(tokenizer: Any, prompt: str) -> str:
    """Drop a textual BOS when the tokenizer adds its own: servers tokenize a /v1/completions prompt with
    special tokens, so the template's BOS would be doubled (Llama). Templates whose BOS-named token is
    ordinary text to the tokenizer (SmolLM's `<|im_start|>`) are left alone."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not prompt.startswith(bos) or not adds_bos(tokenizer):
        return prompt
    return prompt[len(bos) :]


def adds_bos(tokenizer: Any) -> bool:
    """Whether encoding text with special tokens puts the BOS token first (a ChatTokenizer knows it)."""
    known = getattr(tokenizer, "adds_bos", None)
    if isinstance(known, bool):
        return known
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return bos_id is not None and tokenizer("a", add_special_tokens=True).input_ids[:1] == [bos_id]


_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


class ChatTokenizer:
    """A model's chat template and special tokens, for rendering prompts that a server tokenizes.

    Without transformers' tokenizer classes, which import torch (~250 MB in every stage worker that only
    renders prompts for a server), and without keeping the `tokenizers` encoder (~30 MB per worker): it
    is loaded once to learn whether it adds a BOS token, then dropped. Renders with transformers' own
    `render_jinja_template`, given the special tokens, as `apply_chat_template(tokenize=False)` does."""

    def __init__(self, tokenizer_json: Path, config: dict[str, Any], chat_template: str | None) -> None:
        from tokenizers import Tokenizer

        from factory.core.memory import release_freed_memory

        self.special_tokens_map = {
            k: v["content"] if isinstance(v, dict) else v for k in _SPECIAL_TOKENS if (v := config.get(k))
        }
        self.chat_template = chat_template
        self.bos_token = self.special_tokens_map.get("bos_token")
        encoder = Tokenizer.from_file(str(tokenizer_json))
        self.bos_token_id = None if self.bos_token is None else encoder.token_to_id(self.bos_token)
        first = encoder.encode("a", add_special_tokens=True).ids[:1]
        self.adds_bos = self.bos_token_id is not None and first == [self.bos_token_id]
        del encoder
        release_freed_memory()  # glibc keeps the encoder's freed pages resident otherwise

    @classmethod
    def load(cls, source: str, revision: str | None = None) -> ChatTokenizer:
        """From a model folder or a Hub id (its files in the local Hub cache, or downloaded)."""
        folder = Path(source).expanduser()

        def fetch(name: str) -> Path | None:
            if folder.is_dir():
                return folder / name if (folder / name).is_file() else None
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import EntryNotFoundError

            try:
                return Path(hf_hub_download(source, name, revision=revision))
            except EntryNotFoundError:
                return None

        tokenizer_json = fetch("tokenizer.json")
        if tokenizer_json is None:
            raise OSError(f"{source} has no tokenizer.json (a fast tokenizer is needed)")
        config_file = fetch("tokenizer_config.json")
        config = json.loads(config_file.read_text()) if config_file else {}
        template_file = fetch("chat_template.jinja")
        template = template_file.read_text() if template_file else config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one renders chats
            template = {t["name"]: t["template"] for t in template}.get("default")
        return cls(tokenizer_json, config, template)

    def apply_chat_template(
        self,
        messages: list[dict[str, str]],
        *,
        tokenize: bool = False,
        continue_final_message: bool = False,
        add_generation_prompt: bool = False,
    ) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        assert not tokenize and self.chat_template is not None
        result: Any = render_jinja_template(  # (rendered conversations, generation indices)
            [list(messages)],
            chat_template=self.chat_template,
            continue_final_message=continue_final_message,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens_map,
        )
        return str(result[0][0])
