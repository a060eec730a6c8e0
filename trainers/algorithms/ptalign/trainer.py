"""PT-ALIGN trainer: MLE on positive responses + token-level unlikelihood on the harmful tokens of toxic ones.

Loss (docs/training.md, "Losses"; implemented in `trainers.losses.ptalign_loss`):
    L = L_MLE(y⁺) + α · L_UT(y⁻),  L_UT = −mean over selected t of log(clamp(1 − p(y⁻_t), ε))

| setting | meaning |
|---|---|
| `alpha` | weight of the UT term (1.0) |
| `epsilon` | clamp of 1 − p (1e-5) |
| `selection` | `auto` (default: `spans` when the data has them, else `diff`) / `all` / `diff` / `spans` / `ratio`: which toxic tokens are penalised |
| `unselected_toxic` | `none` (default): no loss on the other toxic tokens; `mle`: MLE on them |
| `tau`, `toxic_constraint` | the `ratio` rule: p(y⁻_t \\| x, constraint) / p(y⁻_t \\| x) > τ, scored once with the initial model |

Expected dataset format: `prompt` (messages), `positive` (str), `toxic` (str), `toxic_spans` ([[start, end]]
char offsets into `toxic`). Prompt and padding tokens are in neither term; the toxic response's
end-of-turn token and anything the chat template appends after it are never penalised. Per-token
log-probs are an fp32 log-softmax: on GPU through TRL's fused LM head (fp32 accumulation, only the
labelled positions, no full logits), on CPU from the logits. Both go through the model's own forward,
so DDP/FSDP/DeepSpeed wrapping works.

Imports torch and transformers at module level: import this module only where training happens.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import is_peft_model
from torch.nn.utils.rnn import pad_sequence
from transformers import Trainer
from trl.trainer.utils import add_fused_lm_head

from trainers.algorithms.ptalign import PTAlignSettings
from trainers.losses import is_filler_token, ptalign_loss, select_toxic_tokens, token_logps

TOKEN_FIELDS = ("pos_ids", "pos_mle", "tox_ids", "tox_mle", "tox_ut")


@dataclass
class EncodedResponse:
    """One prompt+response sequence with per-token roles."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    response: list[bool]  # token belongs to the assistant turn
    candidate: list[bool]  # response token before the end-of-turn token (may be penalised)
    content_start: int  # char offset of the response text inside the rendered conversation


def stop_token_ids(tokenizer: Any) -> set[int]:
    """EOS and special tokens (end-of-turn markers such as <|im_end|>): never penalised."""
    ids = set(tokenizer.all_special_ids)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def encode_response(
    tokenizer: Any, prompt: list[dict[str, str]], response: str, stop_ids: set[int]
) -> EncodedResponse:
    """Render the conversation with the chat template and mark which tokens are the response."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(
        prompt + [{"role": "assistant", "content": response}], tokenize=False
    )
    boundary = 0
    for a, b in zip(prompt_text, full_text, strict=False):
        if a != b:
            break
        boundary += 1
    enc = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    is_response = [start >= boundary for start, _ in offsets]
    candidate, ended = [], False
    for tid, resp in zip(ids, is_response, strict=True):
        ended = ended or (resp and tid in stop_ids)
        candidate.append(resp and not ended)
    content_start = full_text.find(response, boundary)
    return EncodedResponse(
        ids, offsets, is_response, candidate, boundary if content_start < 0 else content_start
    )


def encode_triple(
    example: dict[str, Any],
    tokenizer: Any,
    settings: PTAlignSettings,
    *,
    stop_ids: set[int],
    ratio_logps: tuple[list[float], list[float]] | None = None,
) -> dict[str, Any]:
    """Token ids and loss masks for one (prompt, positive, toxic) triple, and `tox_candidates`: how many
    toxic tokens the rule could have penalised (the denominator of the share it did penalise)."""
    rule = settings.selection
    if rule == "auto":  # a bug, not a user error: the trainer resolves it against the dataset
        raise ValueError(
            "resolve selection `auto` first (trainers.algorithms.ptalign.fidelity.resolve_selection)"
        )
    pos = encode_response(tokenizer, example["prompt"], example["positive"], stop_ids)
    tox = encode_response(tokenizer, example["prompt"], example["toxic"], stop_ids)
    positive_ids = [t for t, r in zip(pos.ids, pos.candidate, strict=True) if r]
    spans = [(tox.content_start + s, tox.content_start + e) for s, e in example.get("toxic_spans") or []]
    ignorable = functools.partial(_is_ignorable, tokenizer, frozenset(stop_ids))
    selected = select_toxic_tokens(
        rule,
        tox.ids,
        tox.candidate,
        positive_ids=positive_ids,
        ignorable=ignorable,
        char_spans=tox.offsets,
        harmful_spans=spans,
        logp_constrained=ratio_logps[0] if ratio_logps else None,
        logp_plain=ratio_logps[1] if ratio_logps else None,
        tau=settings.tau,
    )
    tox_mle = (
        [r and not s for r, s in zip(tox.response, selected, strict=True)]
        if settings.unselected_toxic == "mle"
        else []
    )
    return {
        "pos_ids": pos.ids,
        "pos_mle": [int(r) for r in pos.response],
        "tox_ids": tox.ids,
        "tox_mle": [int(m) for m in tox_mle] or [0] * len(tox.ids),
        "tox_ut": [int(s) for s in selected],
        "tox_candidates": sum(tox.candidate),
    }


def encode_rows(
    rows: list[dict[str, Any]], model: Any, tokenizer: Any, settings: PTAlignSettings
) -> list[dict[str, Any]]:
    """`encode_triple` for every row; the `ratio` rule scores each toxic answer once, with `model` as it
    is before training (a fresh LoRA adapter is the identity)."""
    stop_ids = stop_token_ids(tokenizer)
    encoded = []
    for row in rows:
        ratio = (
            ratio_token_logps(model, tokenizer, row, settings.toxic_constraint, stop_ids)
            if settings.selection == "ratio"
            else None
        )
        encoded.append(encode_triple(row, tokenizer, settings, stop_ids=stop_ids, ratio_logps=ratio))
    return encoded


@functools.lru_cache(maxsize=65536)
def _decoded(tokenizer: Any, token_id: int) -> str:
    return str(tokenizer.decode([token_id]))


def _is_ignorable(tokenizer: Any, stop_ids: frozenset[int], token_id: int) -> bool:
    return token_id in stop_ids or is_filler_token(_decoded(tokenizer, token_id))


def ratio_token_logps(
    model: Any, tokenizer: Any, example: dict[str, Any], constraint: str, stop_ids: set[int]
) -> tuple[list[float], list[float]]:
    """log p(y⁻_t | x, toxic constraint) and log p(y⁻_t | x) for every token of the toxic sequence.

    Positions outside the response get 0 in both (they are never candidates). If the two renderings
    tokenize the response differently, nothing is selected for that row.
    """
    plain = encode_response(tokenizer, example["prompt"], example["toxic"], stop_ids)
    prompt = [dict(m) for m in example["prompt"]]
    if prompt[0]["role"] == "system":
        prompt[0]["content"] = f"{constraint}\n{prompt[0]['content']}"
    else:
        prompt.insert(0, {"role": "system", "content": constraint})
    constrained = encode_response(tokenizer, prompt, example["toxic"], stop_ids)
    n = len(plain.ids)
    plain_resp = [t for t, r in zip(plain.ids, plain.response, strict=True) if r]
    cons_resp = [t for t, r in zip(constrained.ids, constrained.response, strict=True) if r]
    if plain_resp != cons_resp:
        return [0.0] * n, [0.0] * n

    def scores(enc: EncodedResponse) -> list[float]:
        ids = torch.tensor([enc.ids], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, :-1]
        logps = token_logps(logits, ids[:, 1:])[0].tolist()
        per_token = [0.0] + logps
        return [v for v, r in zip(per_token, enc.response, strict=True) if r]

    offset = n - len(plain_resp)
    cons, base = scores(constrained), scores(plain)
    return [0.0] * offset + cons, [0.0] * offset + base


@dataclass
class TripleCollator:
    """Batch = positives then toxics (one forward), right-padded, with the MLE and UT masks."""

    pad_token_id: int
    max_length: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, mle, ut = [], [], []
        for ex in examples:
            ids.append(ex["pos_ids"])
            mle.append(ex["pos_mle"])
            ut.append([0] * len(ex["pos_ids"]))
        for ex in examples:
            ids.append(ex["tox_ids"])
            mle.append(ex["tox_mle"])
            ut.append(ex["tox_ut"])
        cut = slice(None, self.max_length)

        def pad(rows: list[list[int]], value: int) -> torch.Tensor:
            return pad_sequence(
                [torch.tensor(r[cut], dtype=torch.long) for r in rows], batch_first=True, padding_value=value
            )

        return {
            "input_ids": pad(ids, self.pad_token_id),
            "attention_mask": pad([[1] * len(r) for r in ids], 0),
            "mle_mask": pad(mle, 0),
            "ut_mask": pad(ut, 0),
        }


class PTAlignTrainer(Trainer):
    """`transformers.Trainer` with the PT-ALIGN loss; logs `mle`, `ut` and the mean p of penalised tokens."""

    # compute_loss returns a per-micro-batch mean, so Trainer divides by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *,
        settings: PTAlignSettings,
        max_length: int | None = None,
        fused_lm_head: bool | None = None,
        **kwargs: Any,
    ) -> None:
        tokenizer = kwargs["processing_class"]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        kwargs.setdefault("data_collator", TripleCollator(pad_token_id=pad, max_length=max_length))
        model = kwargs["model"]
        # The fused head scores only labelled positions on GPU (Triton); on CPU its chunked loop is slower
        # than one logits matmul, so there the logits go through `token_logps` (fp32 log-softmax).
        self.fused_lm_head = torch.cuda.is_available() if fused_lm_head is None else fused_lm_head
        if self.fused_lm_head:
            add_fused_lm_head(model.get_base_model() if is_peft_model(model) else model)
        super().__init__(**kwargs)
        self.settings = settings
        self._metrics: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            columns: Any = list(TOKEN_FIELDS)
            self._signature_columns = columns

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        input_ids = inputs["input_ids"]
        mle_mask, ut_mask = inputs["mle_mask"][:, 1:], inputs["ut_mask"][:, 1:]
        labels = input_ids.masked_fill((inputs["mle_mask"] + inputs["ut_mask"]) == 0, -100)
        if self.fused_lm_head:
            outputs = model(
                input_ids=input_ids,
                attention_mask=inputs["attention_mask"],
                labels=labels,
                fused_lm_head=True,
                use_cache=False,
            )
            logps = outputs.log_probs[:, -mle_mask.size(1) :]
        else:
            outputs = model(input_ids=input_ids, attention_mask=inputs["attention_mask"], use_cache=False)
            # Only labelled positions go through the log-softmax.
            targets = labels[:, 1:]
            scored = targets != -100
            picked = token_logps(outputs.logits[:, :-1][scored], targets[scored])
            logps = torch.zeros(scored.shape, dtype=picked.dtype, device=picked.device).masked_scatter(
                scored, picked
            )
        result = ptalign_loss(logps, mle_mask, ut_mask, alpha=self.settings.alpha, eps=self.settings.epsilon)
        mode = "train" if model.training else "eval"
        metrics = self._metrics[mode]
        metrics["mle"].append(self.accelerator.gather_for_metrics(result.mle.detach()).mean().item())
        metrics["ut"].append(self.accelerator.gather_for_metrics(result.ut.detach()).mean().item())
        if result.ut_tokens:
            p = (logps.detach().exp() * ut_mask).sum() / result.ut_tokens
            metrics["toxic_p"].append(self.accelerator.gather_for_metrics(p).mean().item())
        return (result.loss, outputs) if return_outputs else result.loss

    def prediction_step(
        self,
        model: Any,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        policy: Any = self.model
        mode = "train" if policy.training else "eval"
        prefix = "" if mode == "train" else "eval_"
        logs.update({f"{prefix}{k}": sum(v) / len(v) for k, v in self._metrics[mode].items() if v})
        self._metrics[mode].clear()
        super().log(logs, start_time)
