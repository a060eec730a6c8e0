"""PT-ALIGN and DPO loss functions on hand-built inputs (docs/training.md, "Losses")."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from trainers.losses import (  # noqa: E402
    dpo_pair_losses_from_logps,
    is_filler_token,
    ptalign_loss,
    select_toxic_tokens,
    token_logps,
    unlikelihood_terms,
)


def _logits_for(p: float, vocab: int = 4) -> torch.Tensor:
    """Logits whose softmax gives token 0 probability p and spreads 1 - p over the others."""
    rest = (1 - p) / (vocab - 1)
    return torch.log(torch.tensor([p] + [rest] * (vocab - 1), dtype=torch.float64))


def test_unlikelihood_is_minus_log_one_minus_p_on_hand_built_logits() -> None:
    for p in (0.1, 0.5, 0.9):
        logits = _logits_for(p).unsqueeze(0)
        logp = token_logps(logits, torch.tensor([0]))
        assert logp.item() == pytest.approx(math.log(p), rel=1e-6)
        assert unlikelihood_terms(logp).item() == pytest.approx(-math.log(1 - p), rel=1e-6)


def test_token_logps_is_fp32_and_zero_on_ignored_labels() -> None:
    logits = torch.randn(2, 3, 5, dtype=torch.bfloat16)
    labels = torch.tensor([[1, -100, 2], [0, 4, -100]])
    out = token_logps(logits, labels)
    assert out.dtype == torch.float32
    assert out[0, 1].item() == 0.0 and out[1, 2].item() == 0.0
    expected = torch.log_softmax(logits.float(), -1)[0, 0, 1]
    assert out[0, 0].item() == pytest.approx(expected.item(), abs=1e-6)


def test_unlikelihood_gradient_vanishes_as_p_goes_to_zero() -> None:
    grads = []
    for p in (1e-2, 1e-4, 1e-6):
        logits = _logits_for(p).unsqueeze(0).requires_grad_(True)
        unlikelihood_terms(token_logps(logits, torch.tensor([0]))).sum().backward()
        grads.append(logits.grad.abs().max().item())
    assert grads[0] > grads[1] > grads[2]
    assert grads[2] < 1e-5
    # Not gradient ascent on −log p, whose gradient stays of order 1 as p → 0.
    logits = _logits_for(1e-6).unsqueeze(0).requires_grad_(True)
    token_logps(logits, torch.tensor([0])).sum().backward()
    assert logits.grad.abs().max().item() > 0.5


def test_clamp_holds_as_p_goes_to_one() -> None:
    for p in (1 - 1e-7, 1.0 - 1e-12):
        logits = _logits_for(p).unsqueeze(0).requires_grad_(True)
        term = unlikelihood_terms(token_logps(logits, torch.tensor([0])), eps=1e-5)
        assert term.item() == pytest.approx(-math.log(1e-5), rel=1e-6)
        term.sum().backward()
        assert torch.isfinite(logits.grad).all()
    big = torch.tensor([[50.0, 0.0, 0.0]]).requires_grad_(True)  # p rounds to exactly 1
    term = unlikelihood_terms(token_logps(big, torch.tensor([0])))
    assert torch.isfinite(term).all() and term.item() == pytest.approx(-math.log(1e-5))


def test_ptalign_loss_masks_and_normalises_each_term_by_its_own_count() -> None:
    logps = torch.log(torch.tensor([[0.5, 0.25, 0.9, 0.99], [0.2, 0.4, 0.6, 0.999]], dtype=torch.float64))
    mle_mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])  # row 0 positive response: tokens 0, 1
    ut_mask = torch.tensor(
        [[0, 0, 0, 0], [1, 1, 0, 0]]
    )  # row 1 toxic: tokens 0, 1 selected; 2 unselected; 3 EOS
    out = ptalign_loss(logps, mle_mask, ut_mask, alpha=0.5)
    mle = -(math.log(0.5) + math.log(0.25)) / 2
    ut = -(math.log(1 - 0.2) + math.log(1 - 0.4)) / 2
    assert out.mle.item() == pytest.approx(mle)
    assert out.ut.item() == pytest.approx(ut)
    assert out.loss.item() == pytest.approx(mle + 0.5 * ut)
    assert (out.mle_tokens, out.ut_tokens) == (2, 2)


def test_masked_positions_get_no_gradient() -> None:
    # Prompt, padding and EOS positions carry logps too (here near p = 1); they must not move.
    logps = torch.log(torch.tensor([[0.3, 0.999, 0.7, 0.5]], dtype=torch.float64)).requires_grad_(True)
    out = ptalign_loss(logps, torch.tensor([[0, 0, 1, 0]]), torch.tensor([[1, 0, 0, 0]]))
    out.loss.backward()
    assert logps.grad[0, 1].item() == 0.0 and logps.grad[0, 3].item() == 0.0
    assert logps.grad[0, 0].item() != 0.0 and logps.grad[0, 2].item() != 0.0


def test_empty_terms_are_zero_and_backward_works() -> None:
    logps = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_(True)
    out = ptalign_loss(logps, torch.tensor([[1, 1]]), torch.zeros(1, 2))
    assert out.ut.item() == 0.0 and out.ut_tokens == 0
    out.loss.backward()


TOXIC = [11, 12, 13, 14, 15, 2, 198]  # last two: <|im_end|> and the newline the template adds after it
CANDIDATE = [True, True, True, True, True, False, False]


def test_rule_all_marks_every_candidate_token() -> None:
    assert select_toxic_tokens("all", TOXIC, CANDIDATE) == CANDIDATE


def test_rule_diff_marks_tokens_absent_from_positive_and_not_ignorable() -> None:
    out = select_toxic_tokens(
        "diff", TOXIC, CANDIDATE, positive_ids={12, 2, 198}, ignorable=lambda t: t == 14
    )
    assert out == [True, False, True, False, True, False, False]


def test_rule_spans_marks_tokens_overlapping_annotated_chars() -> None:
    chars = [(0, 3), (3, 8), (8, 12), (12, 20), (20, 21), (21, 31), (31, 32)]
    out = select_toxic_tokens("spans", TOXIC, CANDIDATE, char_spans=chars, harmful_spans=[(9, 13), (25, 40)])
    assert out == [False, False, True, True, False, False, False]


def test_rule_ratio_marks_tokens_more_likely_under_the_toxic_constraint() -> None:
    plain = [math.log(0.1)] * 7
    constrained = [math.log(0.12), math.log(0.105), math.log(0.5), math.log(0.1), math.log(0.2), 0.0, 0.0]
    out = select_toxic_tokens(
        "ratio", TOXIC, CANDIDATE, logp_constrained=constrained, logp_plain=plain, tau=1.1
    )
    assert out == [True, False, True, False, True, False, False]


def test_filler_tokens() -> None:
    assert is_filler_token(" ") and is_filler_token("\n") and is_filler_token(", ") and is_filler_token("...")
    assert not is_filler_token(" rude") and not is_filler_token("a")


def test_dpo_pair_losses_match_the_formulas() -> None:
    c, r = torch.tensor([-10.0, -5.0]), torch.tensor([-12.0, -4.0])
    rc, rr = torch.tensor([-11.0, -5.0]), torch.tensor([-11.0, -5.0])
    delta = (c - rc) - (r - rr)  # [2, -1]
    sig = dpo_pair_losses_from_logps(c, r, rc, rr, beta=0.5)
    torch.testing.assert_close(sig, -torch.nn.functional.logsigmoid(0.5 * delta))
    hinge = dpo_pair_losses_from_logps(c, r, rc, rr, beta=0.5, loss_type="hinge")
    torch.testing.assert_close(hinge, torch.tensor([0.0, 1.5]))
    lengths = torch.tensor([2.0, 4.0])
    ipo = dpo_pair_losses_from_logps(
        c, r, rc, rr, beta=0.5, loss_type="ipo", chosen_lengths=lengths, rejected_lengths=lengths
    )
    torch.testing.assert_close(ipo, (delta / lengths - 1.0) ** 2)
    with pytest.raises(ValueError):
        dpo_pair_losses_from_logps(c, r, rc, rr, beta=0.5, loss_type="nope")
