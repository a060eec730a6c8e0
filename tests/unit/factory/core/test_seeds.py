"""Derived seeds never change: they key the request cache and make the published data. The values
below were computed by the five copies this module replaced (backends, PT-ALIGN, C²-Syn, C²-Eval,
harm eval)."""

from __future__ import annotations

from factory.core.seeds import keyed_rng, prompt_seed, row_request_seed, sample_seed, seed_for


def test_a_backend_request_seed_is_the_recipe_seed_and_prompt_hashed() -> None:
    assert prompt_seed(42, "Hello") == seed_for(42, "Hello") == 1449514765  # the generic steps use seed_for
    assert prompt_seed(42, "Hello!") != prompt_seed(42, "Hello") != prompt_seed(43, "Hello")


def test_a_steps_request_seed_depends_on_method_stage_row_and_tag() -> None:
    assert row_request_seed("ptalign", 7, "write", "3/1", "positive") == 952916611
    assert row_request_seed("ptalign", 7, "write", "3/1", "toxic") != 952916611


def test_an_evaluation_sample_seed() -> None:
    assert sample_seed("c2eval", 0, "7", 10, 0) == 825792033
    assert sample_seed("harm", 1, "base", "r9", 2) == 508640744


def test_a_keyed_rng_draws_the_same_for_the_same_key_only() -> None:
    assert keyed_rng("c2syn", 42, "5").random() == 0.9802519033047454
    assert keyed_rng("c2eval-opener", 0, "7", 10, 0).choice(["a", "b", "c", "d", "e"]) == "e"
    assert keyed_rng("c2syn", 42, "6").random() != keyed_rng("c2syn", 42, "5").random()


def test_every_seed_fits_31_bits() -> None:
    seeds = [prompt_seed(s, "p") for s in range(200)] + [sample_seed("x", s) for s in range(200)]
    assert all(0 <= s < 2**31 for s in seeds) and max(seeds) > 2**30  # the whole range is used
