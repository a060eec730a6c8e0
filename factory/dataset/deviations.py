"""The dataset card's deviation lines that depend on what the run did.

Every line comes from the resolved recipe (modes, settings, templates) and the manifest (counts per
kind), so the card states this run's deviations, not the defaults'; the card lists them after the
recipe's own `card.deviations`. docs/c2syn.md and docs/ptalign.md give the reasons.
"""

from __future__ import annotations

from factory.core.models import stage_decodings
from schemas.manifest import DatasetManifest
from schemas.methods.c2syn import DEGENERATE_KINDS
from schemas.recipe import Recipe, StageSpec

KIND_LABELS = {
    "empty": "empty cuts",
    "one_character": "one-character cuts",
    "non_increasing": "non-increasing cuts",
}
C2SYN_REFERENCE_DECODING = (
    "Llama-2-7B-Chat (4-bit), diverse beam search (num_beams=2, num_beam_groups=2, diversity_penalty=0.5), "
    "128 new tokens"
)


def deviation_lines(recipe: Recipe, manifest: DatasetManifest) -> list[str]:
    """One line per deviation (the card makes them list items), or none for a recipe of neither method."""
    c2syn, ptalign = _c2syn(recipe, manifest), _ptalign(recipe, manifest)
    if not c2syn and not ptalign:
        return []
    docs = ["docs/c2syn.md"] * bool(c2syn) + ["docs/ptalign.md"] * bool(ptalign)
    return [*c2syn, *ptalign, f"The reason for each: {', '.join(docs)} in the safepref repository."]


def _stage(recipe: Recipe, step: str) -> StageSpec | None:
    return next((s for s in recipe.stages if s.step == step), None)


def _share(n: int, total: int) -> str:
    return f"{n:,} of {total:,} rows ({n / total:.1%})" if total else f"{n:,} of 0 rows"


def _per_kind(counts: dict[str, int], prefix: str, total: int) -> str:
    found = [(k, counts.get(f"{prefix}{k}", 0)) for k in DEGENERATE_KINDS]
    shown = [f"{KIND_LABELS[k]} {_share(n, total)}" for k, n in found if n]
    return ", ".join(shown) or "none"


def _c2syn(recipe: Recipe, manifest: DatasetManifest) -> list[str]:
    truncate = _stage(recipe, "c2syn.truncate")
    if truncate is None:
        return []
    stats = manifest.stages.get(truncate.name)
    rows = stats.rows_in if stats else 0
    events = stats.events if stats else {}
    mode = truncate.params["mode"]
    lines = [
        "Openers and triggers: seeded draws over the reference's 15 + 15 phrases in a fixed order (the "
        "reference drew with unseeded `random.choice` over Python sets: not reproducible).",
        "Corrected responses continue an OPEN assistant turn (the reference left an end-of-turn token "
        "after the prefill).",
    ]
    if mode == "strict":
        lines.append(
            "Truncation `strict`: only truly degenerate cuts are changed (empty, one-character, "
            "non-increasing); a fourth cut that is the whole answer is kept, as in the reference. "
            f"re-drawn: {_per_kind(events, 'cuts_redrawn_', rows)}; "
            f"filtered: {_per_kind(manifest.counts.filtered, 'degenerate_cuts_', rows)}."
        )
        if truncate.params.get("keep_first") is not None:
            lines.append(
                f"`keep_first` {truncate.params['keep_first']:,} counts rows with usable cuts (the "
                "reference keeps its first N rows that pass the filter and never filters a cut)."
            )
    else:
        lines.append(
            "Truncation `faithful`: the reference's cuts, degenerate ones kept: "
            f"{_per_kind(events, 'cuts_degenerate_kept_', rows)}."
        )
    select = _stage(recipe, "c2syn.select")
    if select is not None and select.params.get("dedup_on"):
        column = select.params["dedup_on"]
        removed = manifest.counts.filtered.get(f"duplicate_{column}", 0)
        lines.append(
            f"Dedup on `{column}` among rows that pass the filter: {removed:,} rows removed (the reference "
            "does not dedup)."
        )
    check = _stage(recipe, "c2syn.safety_check")
    if check is not None:
        lines.append(
            f"SR safety check (`{check.params['judge']}` judge, action `{check.params['action']}`): "
            f"{manifest.counts.filtered.get('unsafe_safe_response', 0):,} groups filtered (the reference never "
            "checked SR)."
        )
    generate = _stage(recipe, "c2syn.generate")
    for d in stage_decodings(recipe):
        if generate is not None and d.stage == generate.name:
            shown = ", ".join(f"{k}={v}" for k, v in d.decoding.model_dump().items() if v not in (None, []))
            lines.append(f"Generator `{d.model}`, {shown}; the reference: {C2SYN_REFERENCE_DECODING}.")
    return lines


def _ptalign(recipe: Recipe, manifest: DatasetManifest) -> list[str]:
    if not any(s.step.startswith("ptalign.") for s in recipe.stages):
        return []
    from factory.core.templates import template_sha256

    lines = []
    toxic = _stage(recipe, "ptalign.toxic")
    if toxic is not None:
        name = toxic.params["template"]
        used = manifest.inputs_sha256.get(f"template:{name}")
        if used == template_sha256(name):
            lines.append(
                f"Toxic samples: the built-in `{name}` asks for mild, non-operational toxic answers, a "
                "content-safety choice for what safepref ships; the paper's toxic samples are extremely "
                "harmful. Researchers supply their own templates beside the recipe (docs/ptalign.md)."
            )
        else:
            lines.append(f"Toxic samples: the recipe's own template `{name}` (sha256 `{used}`).")
    spans = _stage(recipe, "ptalign.annotate_spans") or _stage(recipe, "ptalign.diff_spans")
    if spans is not None:
        how = "annotated by the LLM" if spans.step == "ptalign.annotate_spans" else "a word diff (no LLM)"
        lines.append(
            f"Harmful-token spans: {how} (stage `{spans.name}`); the trainer's default token rule `auto` "
            "penalises exactly these spans and reports the share of toxic tokens it penalised."
        )
    models = sorted({g.model for g in manifest.generators})
    lines.append(
        f"Self-alignment is the method's premise: train {' / '.join(f'`{m}`' for m in models) or 'the generator'}"
        " on this data (`safepref train` records whether the trained model generated it and warns if not)."
    )
    return lines
