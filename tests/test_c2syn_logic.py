"""C²-Syn selection and truncation against hand-computed examples (reference: syn/synthesize.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from factory.rows import RowFiltered
from factory.steps.c2syn import (
    assistant_prefill,
    count_delimiters,
    faithful_prefixes,
    join_continuation,
    reference_prefixes,
    row_rng,
    select_fhr,
    truncate,
)
from schemas.step_params import C2_DELIMITERS, C2_OPENERS, C2_TRIGGERS

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


def test_unsafe_response_must_have_more_than_80_words() -> None:
    with pytest.raises(RowFiltered, match="no_long_unsafe_response"):
        select_fhr(row(r0=" ".join(["w"] * 80)), KW, 80)
    with pytest.raises(RowFiltered, match="no_long_unsafe_response"):
        select_fhr(row(s0=True), KW, 80)  # long but safe


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


def test_degenerate_rows_faithful_keeps_them_strict_filters_them() -> None:
    short = "Only one, delimiter here"  # t = 1 -> t_k in {-1, 0}
    tr = truncate(
        short,
        random.Random(0),
        mode="faithful",
        delimiters=C2_DELIMITERS,
        openers=C2_OPENERS,
        triggers=C2_TRIGGERS,
    )
    assert tr.t == 1 and tr.t_k in (-1, 0)
    assert tr.prefixes in (["O"] * 4, [short] * 4)
    with pytest.raises(RowFiltered, match="degenerate_cuts"):
        truncate(
            short,
            random.Random(0),
            mode="strict",
            delimiters=C2_DELIMITERS,
            openers=C2_OPENERS,
            triggers=C2_TRIGGERS,
        )


def test_strict_redraws_when_the_last_cut_would_be_the_whole_text() -> None:
    text = "a,b,c,d,e,f,g,h,"  # t = 8 and ends with a delimiter: t_k = 2 puts cut 4 at the very end
    tr = truncate(
        text,
        _rng_drawing(2),
        mode="strict",
        delimiters=C2_DELIMITERS,
        openers=C2_OPENERS,
        triggers=C2_TRIGGERS,
    )
    assert tr.t_k == 1 and tr.redrawn
    assert tr.prefixes[-1] == "a,b,c,d,"


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    text = "One, two. Three; four: five! Six? Seven - eight (nine) ten, eleven, twelve."
    kw = dict(mode="strict", delimiters=C2_DELIMITERS, openers=C2_OPENERS, triggers=C2_TRIGGERS)
    a = truncate(text, row_rng(42, "row-1"), **kw)  # type: ignore[arg-type]
    b = truncate(text, row_rng(42, "row-1"), **kw)  # type: ignore[arg-type]
    assert a == b
    others = [truncate(text, row_rng(seed, "row-1"), **kw) for seed in range(43, 53)]  # type: ignore[arg-type]
    assert any((o.openers, o.triggers) != (a.openers, a.triggers) for o in others)
    assert all(o in C2_OPENERS for o in a.openers) and all(t in C2_TRIGGERS for t in a.triggers)


def test_stored_syn_text_is_opener_prefix_trigger_continuation() -> None:
    prefill = assistant_prefill("Sure, I can help you with that.", "Be rude,", "but I must advise you that")
    assert prefill == "Sure, I can help you with that. Be rude, but I must advise you that"
    assert join_continuation(prefill, " it is unkind.") == prefill + " it is unkind."
    assert join_continuation(prefill, "it is unkind.\n") == prefill + " it is unkind."
    assert join_continuation(prefill, ", honestly.") == prefill + ", honestly."


def test_reference_lists_are_verbatim_and_ordered() -> None:
    assert len(C2_OPENERS) == 15 and len(C2_TRIGGERS) == 15
    assert C2_OPENERS[0] == "Of course, I can assist you with that."
    assert C2_TRIGGERS[2] == "However, I don't think it's appropriate or respectful to"
    assert C2_DELIMITERS == ',.!:;?-"(){}[]'
