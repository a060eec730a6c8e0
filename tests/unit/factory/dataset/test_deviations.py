"""The card's deviation section is generated from what the run did (recipe as run + manifest counts)."""

from __future__ import annotations

from typing import Any

from factory.core.templates import template_sha256
from factory.dataset.deviations import deviation_lines
from factory.engine.recipe import load_recipe
from schemas.manifest import DatasetManifest, GeneratorInfo, RowCounts, StageStats


def manifest(**fields: Any) -> DatasetManifest:
    base: dict[str, Any] = {
        "safepref_version": "0",
        "recipe_name": "r",
        "recipe_version": "0",
        "recipe_hash": "0" * 64,
        "created_at": "2026-01-01T00:00:00+00:00",
        "seed": 0,
        "license": "cc-by-nc-4.0",
        "configs": {},
        "counts": RowCounts(input=10, created=0, expanded=0, output=10),
    }
    return DatasetManifest.model_validate({**base, **fields})


def test_faithful_truncation_states_the_degenerate_cuts_it_kept_per_kind() -> None:
    loaded = load_recipe("c2syn-demo", ["stages.truncate.params.mode=faithful"])
    stats = {
        "truncate": StageStats(
            step="c2syn.truncate", rows_in=10, events={"cuts_degenerate_kept_one_character": 2}
        )
    }
    text = "\n".join(deviation_lines(loaded.recipe, manifest(stages=stats)))
    assert text.endswith("The reason for each: docs/c2syn.md in the safepref repository.")
    assert (
        "Truncation `faithful`: the reference's cuts, degenerate ones kept: one-character cuts 2 of 10 rows (20.0%)."
        in text
    )
    assert "re-drawn" not in text
    assert (
        "the reference: Llama-2-7B-Chat (4-bit), diverse beam search" in text
    )  # the run's decoding beside it


def test_ptalign_card_says_which_toxic_template_ran_and_names_the_generator() -> None:
    loaded = load_recipe("ptalign-demo")
    generators = [
        GeneratorInfo(backend="local", kind="transformers", model="HuggingFaceTB/SmolLM2-135M-Instruct")
    ]
    builtin = {"template:ptalign/toxic.jinja": template_sha256("ptalign/toxic.jinja")}
    text = "\n".join(deviation_lines(loaded.recipe, manifest(generators=generators, inputs_sha256=builtin)))
    assert "the built-in `ptalign/toxic.jinja` asks for mild, non-operational toxic answers" in text
    assert "the paper's toxic samples are extremely harmful" in text
    assert "Harmful-token spans: annotated by the LLM" in text
    assert "train `HuggingFaceTB/SmolLM2-135M-Instruct` on this data" in text
    own = {"template:ptalign/toxic.jinja": "f" * 64}
    text = "\n".join(deviation_lines(loaded.recipe, manifest(generators=generators, inputs_sha256=own)))
    assert f"the recipe's own template `ptalign/toxic.jinja` (sha256 `{'f' * 64}`)" in text
    assert "mild" not in text
