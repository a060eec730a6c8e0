"""C²-Syn selection and truncation against hand-computed examples (reference: syn/synthesize.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from factory.core.rows import RowFiltered
from factory.steps.c2syn.steps import (
    count_delimiters,
    degenerate_kind,
    faithful_prefixes,
    select_fhr,
    truncate,
)
from schemas.methods.c2syn import C2_DELIMITERS, C2_OPENERS, C2_TRIGGERS

LONG_UNSAFE = " ".join(["word"] * 81)
KW = ["how", "what", "How", "What"]


def row(
    prompt: str = "How do I annoy them?",
    r0: str = LONG_UNSAFE,
    s0: bool = False,
    r1: str = "No.",
    s1: bool = True,
) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "response_0": r0,
        "response_1": r1,
        "is_response_0_safe": s0,
        "is_response_1_safe": s1,
    }


def test_keyword_filter_is_a_case_sensitive_substring_match() -> None:
    assert select_fhr(row("somehow this counts"), KW, 80) == LONG_UNSAFE  # "how" inside "somehow"
    with pytest.raises(RowFiltered, match="no_keyword"):
        select_fhr(row("WHY would I"), KW, 80)


def test_a_short_unsafe_answer_and_no_unsafe_answer_are_two_rules() -> None:
    with pytest.raises(RowFiltered, match="^unsafe_response_too_short$"):
        select_fhr(row(r0=" ".join(["w"] * 80)), KW, 80)  # unsafe, but 80 words is not more than 80
    with pytest.raises(RowFiltered, match="^no_unsafe_response$"):
        select_fhr(row(s0=True), KW, 80)  # long but safe, and response_1 is safe too
    with pytest.raises(RowFiltered, match="^unsafe_response_too_short$"):
        select_fhr(row(s0=True, r1="short and unsafe", s1=False), KW, 80)


def test_fhr_prefers_response_0_then_falls_back_to_response_1() -> None:
    other = " ".join(["other"] * 90)
    assert select_fhr(row(r1=other, s1=False), KW, 80) == LONG_UNSAFE
    assert select_fhr(row(r0="short", r1=other, s1=False), KW, 80) == other


# t = 8 delimiters: "a,b,c,d,e,f,g,h,i" has 8 commas
TEXT8 = "a,b,c,d,e,f,g,h,i"


def test_faithful_prefixes_cut_at_multiples_of_t_k_including_the_delimiter() -> None:
    assert count_delimiters(TEXT8, C2_DELIMITERS) == 8
    assert faithful_prefixes(TEXT8, 2, C2_DELIMITERS) == [
        "a,b,",
        "a,b,c,d,",
        "a,b,c,d,e,f,",
        "a,b,c,d,e,f,g,h,",
    ]
    assert faithful_prefixes(TEXT8, 1, C2_DELIMITERS) == ["a,", "a,b,", "a,b,c,", "a,b,c,d,"]


def test_faithful_degenerate_cases_match_the_reference_loop() -> None:
    # t_k = 0: the first character already has count == 0 -> one-character prefixes
    assert faithful_prefixes("ab,c", 0, C2_DELIMITERS) == ["a"] * 4
    # t_k = -1: i*t_k is negative and never reached -> the whole text
    assert faithful_prefixes("ab,c", -1, C2_DELIMITERS) == ["ab,c"] * 4
    # a cut beyond the last delimiter -> whole text
    assert faithful_prefixes("a,b,c", 2, C2_DELIMITERS)[1:] == ["a,b,c"] * 3


def reference_prefixes(text: str, t_k: int, delimiters: str, k: int = 4) -> list[str]:
    """The reference loop (syn/synthesize.py), character by character: what `faithful_prefixes` must equal."""
    prefixes = []
    for i in range(1, k + 1):
        out = []
        count = 0
        for ch in text:
            if ch in delimiters:
                count += 1
            if count == i * t_k:
                out.append(ch)
                break
            out.append(ch)
        prefixes.append("".join(out))
    return prefixes


@pytest.mark.parametrize("t_k", [-1, 0, 1, 2, 3, 7, 50])
@pytest.mark.parametrize(
    "text",
    [
        "a,b,c,d,e,f,g,h,i",
        ",starts with a delimiter, then more; text",
        "no delimiters at all",
        "",
        'Quotes "and" (brackets) [x] {y} - dash! Really? Yes: done.',
        "x" * 30 + "." * 12,
    ],
)
def test_fast_prefixes_equal_the_reference_character_loop(text: str, t_k: int) -> None:
    assert faithful_prefixes(text, t_k, C2_DELIMITERS) == reference_prefixes(text, t_k, C2_DELIMITERS)


def _rng_drawing(t_k_first: int) -> random.Random:
    """A seeded RNG whose first randint(1, 2) draw is t_k_first (found by search, not assumed)."""
    for seed in range(1000):
        if random.Random(seed).randint(1, 2) == t_k_first:
            return random.Random(seed)
    raise AssertionError("no seed found")


def test_t_k_is_drawn_from_randint_t_div_4_minus_1_to_t_div_4() -> None:
    for expected in (1, 2):
        tr = truncate(
            TEXT8,
            _rng_drawing(expected),
            mode="faithful",
            delimiters=C2_DELIMITERS,
            openers=C2_OPENERS,
            triggers=C2_TRIGGERS,
        )
        assert (tr.t, tr.t_k) == (8, expected)
        assert tr.prefixes == faithful_prefixes(TEXT8, expected, C2_DELIMITERS)


def _truncate(text: str, rng: random.Random, mode: str) -> Any:
    return truncate(text, rng, mode=mode, delimiters=C2_DELIMITERS, openers=C2_OPENERS, triggers=C2_TRIGGERS)


@pytest.mark.parametrize(
    ("prefixes", "kind"),
    [
        (["a,", "a,b,", "a,b,c,", "a,b,c,d,"], None),
        (["a,b,", "a,b,c,d,", "a,b,c,d,e,f,", "a,b,c,d,e,f,g,h,"], None),  # 4th cut = whole text: kept
        (["O"] * 4, "one_character"),  # t_k = 0
        (['"', '"a,', '"a,b,', '"a,b,c,'], "one_character"),  # the first delimiter is the first char
        (["text, more"] * 4, "non_increasing"),  # t_k = -1: every prefix is the whole text
        ([" ", " a,", " a,b,", " a,b,c,"], "empty"),  # no visible text
    ],
)
def test_only_empty_one_character_and_non_increasing_cuts_are_degenerate(
    prefixes: list[str], kind: str | None
) -> None:
    assert degenerate_kind(prefixes) == kind


def test_degenerate_rows_faithful_keeps_them_strict_filters_them_by_kind() -> None:
    short = "Only one, delimiter here"  # t = 1 -> t_k in {-1, 0}: both draws degenerate
    for seed in range(20):
        tr = _truncate(short, random.Random(seed), "faithful")
        assert tr.t == 1 and tr.t_k in (-1, 0) and not tr.redrawn
        expected = {0: (["O"] * 4, "one_character"), -1: ([short] * 4, "non_increasing")}[tr.t_k]
        assert (tr.prefixes, tr.degenerate) == expected
        with pytest.raises(RowFiltered, match=f"^degenerate_cuts_{tr.degenerate}$"):
            _truncate(short, random.Random(seed), "strict")


def test_strict_keeps_a_fourth_cut_that_is_the_whole_answer_as_the_reference_does() -> None:
    text = "a,b,c,d,e,f,g,h,"  # t = 8 and ends with a delimiter: t_k = 2 puts cut 4 at the very end
    tr = _truncate(text, _rng_drawing(2), "strict")
    assert (tr.t_k, tr.redrawn, tr.degenerate) == (2, False, None)
    assert tr.prefixes[-1] == text


def test_strict_redraws_a_one_character_draw_with_the_other_admissible_t_k() -> None:
    text = "a,b,c,d,e"  # t = 4: t_k in {0, 1}; 0 cuts after "a", 1 is usable
    seed = next(s for s in range(100) if random.Random(s).randint(0, 1) == 0)
    tr = _truncate(text, random.Random(seed), "strict")
    assert (tr.t_k, tr.redrawn, tr.degenerate) == (1, True, "one_character")
    assert tr.prefixes == ["a,", "a,b,", "a,b,c,", "a,b,c,d,"]


def test_truncation_shares_are_exact_expectations_over_the_two_draws() -> None:
    from bench.c2syn_truncation import outcome_shares

    six = "a,b,c,d,e,f,g"  # t = 6: t_k = 0 is re-drawn to 1
    whole = "a,b,c,d,e,f,g,h,"  # t = 8: t_k = 2 cuts the fourth time at the very end (kept)
    one = "Only one, delimiter here"  # t = 1: t_k -1 and 0 are both degenerate: filtered
    fine = "a,b,c,d,e,f,g,h,i,j,k,l,m"  # t = 12
    shares = outcome_shares([six, whole, one, fine])
    assert shares == {
        "redrawn_empty": 0.0,
        "redrawn_one_character": 0.125,
        "redrawn_non_increasing": 0.0,
        "filtered_empty": 0.0,
        "filtered_one_character": 0.125,
        "filtered_non_increasing": 0.125,
        "whole_answer_cut_4": 0.125,
    }
