"""Dataset card (README.md) generated from the recipe, the schemas and the run's manifest."""

from __future__ import annotations

from typing import Any

import yaml

from factory.card_check import HARMFUL_TAG, size_category
from factory.deviations import deviation_lines
from factory.generators import stage_decodings
from schemas.manifest import DatasetManifest
from schemas.recipe import Recipe

CONTENT_WARNING = (
    "> **Content warning.** This dataset contains machine-generated harmful text (the rejected or toxic "
    "responses) produced for safety-alignment research. It is not for all audiences. Do not use it to "
    "build systems that produce such content."
)

GATED_NOTE = (
    "Access: this dataset holds harmful text, so `safepref publish` makes it private and gated by default "
    "(manual approval of an access request that states a research use)."
)


def card_metadata(recipe: Recipe, manifest: DatasetManifest) -> dict[str, Any]:
    default = next(name for name, c in manifest.configs.items() if c.default)
    n_default = sum(s.num_rows for s in manifest.configs[default].splits.values())
    tags = list(dict.fromkeys(["safety", "synthetic", "safepref", *recipe.card.tags]))
    if manifest.contains_harmful_text and HARMFUL_TAG not in tags:
        tags.append(HARMFUL_TAG)  # the publisher adds gating on top; it finds the tag already here
    configs = []
    for name, info in manifest.configs.items():
        entry: dict[str, Any] = {
            "config_name": name,
            "data_files": [{"split": split, "path": f"{name}/{split}-*.parquet"} for split in info.splits],
        }
        if info.default:
            entry["default"] = True
        configs.append(entry)
    meta: dict[str, Any] = {
        "license": recipe.license,
        "language": recipe.card.language,
        "pretty_name": recipe.card.pretty_name,
        "task_categories": recipe.card.task_categories,
        "size_categories": [size_category(n_default)],
        "tags": tags,
        "annotations_creators": ["machine-generated"],
        "configs": configs,
    }
    if recipe.card.source_datasets:
        meta["source_datasets"] = recipe.card.source_datasets
    return meta


def render_card(recipe: Recipe, manifest: DatasetManifest) -> str:
    meta = card_metadata(recipe, manifest)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines.append(f"# {recipe.card.pretty_name}")
    lines.append("")
    if manifest.contains_harmful_text:
        lines += [CONTENT_WARNING, "", GATED_NOTE, ""]
    if recipe.card.description:
        lines += [recipe.card.description.strip(), ""]
    lines += ["## Configs", "", "| config | schema | split | rows |", "|---|---|---|---|"]
    for name, info in manifest.configs.items():
        for split, s in info.splits.items():
            default = " (default)" if info.default else ""
            lines.append(f"| `{name}`{default} | `{info.schema_name}` | {split} | {s.num_rows:,} |")
    c = manifest.counts
    lines += [
        "",
        "## Where every input row went",
        "",
        f"- input rows: {c.input:,}",
        f"- kept (exported): {c.output:,}",
    ]
    for rule, n in sorted(c.filtered.items()):
        lines.append(f"- filtered by `{rule}`: {n:,}")
    for stage, n in sorted(c.quarantined.items()):
        lines.append(
            f"- quarantined at stage `{stage}`: {n:,} (raw output and error in `quarantine/rows.parquet`)"
        )
    lines += ["", "## Generation", ""]
    if manifest.generators:
        lines += ["| backend | kind | model | revision | decoding |", "|---|---|---|---|---|"]
        for g in manifest.generators:
            decoding = ", ".join(f"{k}={v}" for k, v in g.generation.items() if v not in (None, []))
            lines.append(f"| {g.backend} | {g.kind} | `{g.model}` | {g.revision or '-'} | {decoding} |")
        decodings = stage_decodings(recipe)
        if decodings:
            lines += ["", "Decoding per LLM stage (the backend's, with the stage's overrides):", ""]
            lines += ["| stage | role | model | decoding |", "|---|---|---|---|"]
            for d in decodings:
                shown = ", ".join(
                    f"{k}={v}" for k, v in d.decoding.model_dump().items() if v not in (None, [])
                )
                lines.append(f"| {d.stage} | {d.role} | `{d.model}` | {shown} |")
    else:
        lines.append("No LLM was used.")
    lines += [
        "",
        f"Tokens: {manifest.prompt_tokens:,} prompt, {manifest.completion_tokens:,} generated"
        + (
            f"; wall time {manifest.wall_time_s:.1f} s"
            f" ({manifest.completion_tokens / max(manifest.wall_time_s, 1e-9):,.1f} generated tokens/s overall)."
            if manifest.wall_time_s is not None
            else "."
        ),
        "",
        "| stage | step | rows in | kept | filtered | quarantined | LLM calls | of them from cache | generated tokens |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} | `{st.step}` | {st.rows_in:,} | {st.rows_ok:,} | {st.filtered:,} | {st.quarantined:,}"
            f" | {st.llm_calls:,} | {st.cached_calls:,} | {st.completion_tokens:,} |"
            for name, st in manifest.stages.items()
        ),
        "",
    ]
    events = [
        f"- stage `{name}`: " + ", ".join(f"{event} {n:,}" for event, n in sorted(st.events.items()))
        for name, st in manifest.stages.items()
        if st.events
    ]
    if events:
        lines += ["Other events (rows kept, but changed on the way):", "", *events, ""]
    lines += deviation_lines(recipe, manifest)
    lines += ["## Stage settings", "", "| stage | step | settings |", "|---|---|---|"]
    for spec in recipe.stages:
        lines.append(f"| {spec.name} | `{spec.step}` | {_settings(spec.params) or '-'} |")
    lines += [
        "",
        "## Provenance",
        "",
        f"- recipe: `{manifest.recipe_name}` v{manifest.recipe_version}, sha256 `{manifest.recipe_hash}`"
        " (the resolved recipe is `recipe.resolved.yaml`)",
        f"- seed: {manifest.seed}",
        f"- built with safepref {manifest.safepref_version} on {manifest.created_at}",
        f"- licence: `{recipe.license}`",
    ]
    for name, sha in manifest.inputs_sha256.items():
        lines.append(f"- {name.replace(':', ' ', 1)}: sha256 `{sha}`")
    if manifest.source:
        src = ", ".join(f"{k}={v}" for k, v in manifest.source.items() if v not in (None, {}, []))
        lines.append(f"- source: {src}")
    if recipe.card.citation:
        lines += ["", "## Citation", "", "```bibtex", recipe.card.citation.strip(), "```"]
    return "\n".join(lines) + "\n"


def _settings(params: dict[str, Any]) -> str:
    """A stage's parameters as run, compact: long lists by their length, nested values as short JSON."""
    import json

    shown = []
    for key, value in params.items():
        if isinstance(value, list) and (len(value) > 4 or any(len(str(v)) > 40 for v in value)):
            text = f"[{len(value)} items]"
        elif isinstance(value, (dict, list)):
            text = json.dumps(
                {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
            )
            text = text if len(text) <= 80 else text[:77] + "..."
        else:
            text = json.dumps(value) if isinstance(value, str) and len(value) <= 60 else str(value)[:60]
        shown.append(f"{key}={text}")
    return ", ".join(shown).replace("|", "\\|")
