"""Training losses as plain functions: token log-probs, PT-ALIGN (MLE + token-level unlikelihood), DPO pairs.

Everything here works on tensors only, so each formula is unit-tested on hand-built inputs
(tests/unit/trainers/test_losses.py). The losses are tabled in docs/training.md, "Losses".
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

SelectionRule = Literal["all", "diff", "spans", "ratio"]
SELECTION_RULES: tuple[str, ...] = ("all", "diff", "spans", "ratio")
DPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "hinge", "ipo", "robust", "sigmoid_norm")
UT_EPSILON = 1e-5


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) at each position, with the log-softmax in fp32; positions labelled -100 give 0.

    `logits[..., t, :]` scores `labels[..., t]` (the caller has already shifted them).
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(labels == -100, 0.0)


def unlikelihood_terms(logps: torch.Tensor, eps: float = UT_EPSILON) -> torch.Tensor:
    """Per-token −log(clamp(1 − p, eps)) with p = exp(logps).

    `-expm1(logp)` is 1 − p without cancellation for small p. The gradient w.r.t. logp is p / (1 − p):
    it vanishes as p → 0 (nothing left to push down) and the clamp stops it near p = 1, so this is
    unlikelihood, not gradient ascent on −log p.
    """
    import torch

    one_minus_p = (-torch.expm1(logps.float())).clamp(min=eps)
    return -torch.log(one_minus_p)


@dataclass
class PTAlignLoss:
    """`loss = mle + alpha * ut`; the token counts each term was normalised by."""

    loss: torch.Tensor
    mle: torch.Tensor
    ut: torch.Tensor
    mle_tokens: int
    ut_tokens: int


def ptalign_loss(
    logps: torch.Tensor,
    mle_mask: torch.Tensor,
    ut_mask: torch.Tensor,
    *,
    alpha: float = 1.0,
    eps: float = UT_EPSILON,
) -> PTAlignLoss:
    """PT-ALIGN: `L = L_MLE + alpha * L_UT`, each term averaged over its own tokens.

    `logps` holds log p of each target token (fp32, any shape); `mle_mask` marks the tokens trained
    by MLE (positive responses, plus unselected toxic tokens when configured), `ut_mask` the selected
    harmful tokens of the toxic responses. Prompt, padding and end-of-turn tokens are 0 in both masks,
    so they never contribute. An empty term is 0 (with a graph, so backward still works).
    """
    mle_mask = mle_mask.to(logps.dtype)
    ut_mask = ut_mask.to(logps.dtype)
    mle_tokens = int(mle_mask.sum().item())
    ut_tokens = int(ut_mask.sum().item())
    mle = -(logps * mle_mask).sum() / max(mle_tokens, 1)
    ut = (unlikelihood_terms(logps, eps) * ut_mask).sum() / max(ut_tokens, 1)
    return PTAlignLoss(loss=mle + alpha * ut, mle=mle, ut=ut, mle_tokens=mle_tokens, ut_tokens=ut_tokens)


def is_filler_token(text: str) -> bool:
    """True for a token whose text is only whitespace and/or punctuation (never a 'harmful word')."""
    stripped = text.strip()
    return not stripped or all(ch in string.punctuation or ch.isspace() for ch in stripped)


def select_toxic_tokens(
    rule: SelectionRule,
    toxic_ids: Sequence[int],
    candidate: Sequence[bool],
    *,
    positive_ids: Collection[int] = (),
    ignorable: Callable[[int], bool] = lambda _id: False,
    char_spans: Sequence[tuple[int, int]] | None = None,
    harmful_spans: Sequence[tuple[int, int]] = (),
    logp_constrained: Sequence[float] | None = None,
    logp_plain: Sequence[float] | None = None,
    tau: float = 1.1,
) -> list[bool]:
    """Which tokens of a toxic response get the unlikelihood loss (docs/ptalign.md, "Training: which
    toxic tokens are penalised").

    `candidate[t]` is False for tokens that may never be penalised (prompt, padding, end-of-turn and
    what the chat template appends after it); every rule returns False there.
    - `all`: every candidate token.
    - `diff`: token ids absent from the positive response, except `ignorable` ones (special,
      whitespace, punctuation).
    - `spans`: tokens whose character range `char_spans[t]` overlaps an annotated `harmful_spans` range
      (same coordinates, end exclusive).
    - `ratio`: p(y_t | x, toxic constraint) / p(y_t | x) > tau, from the two log-prob sequences.
    """
    n = len(toxic_ids)
    if len(candidate) != n:
        raise ValueError(f"candidate has {len(candidate)} entries for {n} tokens")
    if rule == "all":
        return [bool(c) for c in candidate]
    if rule == "diff":
        positive = set(positive_ids)
        return [
            bool(c) and tid not in positive and not ignorable(tid)
            for tid, c in zip(toxic_ids, candidate, strict=True)
        ]
    if rule == "spans":
        if char_spans is None or len(char_spans) != n:
            raise ValueError("the spans rule needs one character range per token")
        return [
            bool(c) and any(ts < he and te > hs for hs, he in harmful_spans)
            for (ts, te), c in zip(char_spans, candidate, strict=True)
        ]
    if rule == "ratio":
        if (
            logp_constrained is None
            or logp_plain is None
            or len(logp_constrained) != n
            or len(logp_plain) != n
        ):
            raise ValueError("the ratio rule needs both log-prob sequences, one value per token")
        log_tau = math.log(tau)
        return [
            bool(c) and (lc - lp) > log_tau
            for lc, lp, c in zip(logp_constrained, logp_plain, candidate, strict=True)
        ]
    raise ValueError(f"unknown selection rule {rule!r}; expected one of {SELECTION_RULES}")


def dpo_pair_losses_from_logps(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair DPO losses from summed sequence log-probs, with TRL 1.16's formulas (reverse KL).

    `ipo` and `sigmoid_norm` divide each log-ratio by its completion length, as TRL does.
    """
    import torch
    import torch.nn.functional as F

    chosen = chosen_logps - ref_chosen_logps
    rejected = rejected_logps - ref_rejected_logps
    delta = chosen - rejected
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * delta)
    if loss_type == "hinge":
        return torch.relu(1 - beta * delta)
    if loss_type == "robust":
        clean = -(1 - label_smoothing) * F.logsigmoid(beta * delta)
        flipped = -label_smoothing * F.logsigmoid(-beta * delta)
        return (clean - flipped) / (1 - 2 * label_smoothing)
    if loss_type in ("ipo", "sigmoid_norm"):
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(f"loss_type {loss_type!r} needs the completion lengths")
        norm_delta = chosen / chosen_lengths.clamp(min=1.0) - rejected / rejected_lengths.clamp(min=1.0)
        if loss_type == "ipo":
            return (norm_delta - 1 / (2 * beta)) ** 2
        return -F.logsigmoid(beta * norm_delta)
    raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected one of {DPO_LOSS_TYPES}")
