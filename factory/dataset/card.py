"""Dataset card (README.md): huggingface_hub's `DatasetCard`, its body rendered from a Jinja template.

The YAML header is a `DatasetCardData` (with `dataset_info` from `datasets`); the body is
`recipes/templates/card/dataset_card.md.jinja`, rendered in the sandbox with facts from the recipe, the
manifest, the record schemas and the written files. Nothing in it depends on the clock, so reusing
a finished run rewrites the same bytes.
"""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from factory.core.models import stage_decodings
from factory.dataset.card_check import HARMFUL_TAG, size_category
from factory.dataset.deviations import deviation_lines
from schemas.manifest import DatasetManifest
from schemas.recipe import OutputSpec, Recipe, StageSpec
from schemas.registry import EXPORTER_PARAMS, EXPORTERS, HARMFUL_TEXT_SCHEMAS, RECORD_SCHEMAS, STEP_PARAMS

CONTENT_WARNING = (
    "> **Content warning.** This dataset contains machine-generated harmful text (the rejected or toxic "
    "responses) produced for safety-alignment research. It is not for all audiences. Do not use it to "
    "build systems that produce such content."
)
CARD_TEMPLATE = "card/dataset_card.md.jinja"
EXAMPLE_ROWS = 3
EXAMPLE_CHARS = 160  # longer strings in the example rows are cut, so the card stays readable


@dataclass(frozen=True)
class Method:
    name: str
    paper: str
    arxiv: str


def method_of(recipe: Recipe) -> Method | None:
    """The paper the recipe's outputs follow, when they all come from one declared method that has one."""
    from schemas.registry import METHOD_OF_EXPORTER

    declared = {METHOD_OF_EXPORTER[o.exporter].name: METHOD_OF_EXPORTER[o.exporter] for o in recipe.outputs}
    papers = [(m.label, m.paper) for m in declared.values() if m.paper is not None]
    if len(papers) != 1 or len(declared) != 1:
        return None
    label, paper = papers[0]
    return Method(label, paper.title, paper.arxiv)


def source_datasets(recipe: Recipe) -> list[str]:
    """Hub datasets the rows derive from: a Hub source's id plus what the recipe's card declares."""
    hub = [recipe.source.dataset] if recipe.source.kind == "hub" and recipe.source.dataset else []
    return list(dict.fromkeys([*hub, *recipe.card.source_datasets]))


def card_data(recipe: Recipe, manifest: DatasetManifest, folder: Path) -> Any:
    """The card's YAML header as huggingface_hub's `DatasetCardData`, `dataset_info` included."""
    from huggingface_hub import DatasetCardData

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
    data = DatasetCardData(
        license=recipe.license,
        language=recipe.card.language,
        pretty_name=recipe.card.pretty_name,
        task_categories=recipe.card.task_categories,
        size_categories=[size_category(n_default)],
        tags=tags,
        annotations_creators=["machine-generated"],
        source_datasets=source_datasets(recipe) or None,
        configs=configs,
    )
    _dataset_infos(manifest, folder).to_dataset_card_data(data)
    return data


def _dataset_infos(manifest: DatasetManifest, folder: Path) -> Any:
    """`datasets`' own description of each config (features, rows and bytes per split), from the files."""
    import pyarrow.parquet as pq
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict

    infos = {}
    for name, info in manifest.configs.items():
        features, splits, size = None, SplitDict(), 0
        for split, s in info.splits.items():
            metas = [pq.read_metadata(folder / f) for f in s.files]
            if metas:
                features = Features.from_arrow_schema(metas[0].schema.to_arrow_schema())
            num_bytes = sum(m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups))
            splits.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=s.num_rows))
            size += sum((folder / f).stat().st_size for f in s.files)
        dataset_size = sum(sp.num_bytes for sp in splits.values())
        infos[name] = DatasetInfo(
            config_name=name, features=features, splits=splits, download_size=size, dataset_size=dataset_size
        )
    return DatasetInfosDict(infos)


def render_card(recipe: Recipe, manifest: DatasetManifest, folder: Path) -> str:
    """The README.md text for the dataset folder `folder` that `manifest` describes."""
    from huggingface_hub import DatasetCard

    from factory.core.templates import render_template

    schemas = list(dict.fromkeys(c.schema_name for c in manifest.configs.values()))
    body = render_template(
        CARD_TEMPLATE,
        card_data=card_data(recipe, manifest, folder).to_yaml(),
        recipe=recipe,
        manifest=manifest,
        method=method_of(recipe),
        source=_source_line(recipe, manifest),
        harmful=manifest.contains_harmful_text,
        content_warning=CONTENT_WARNING,
        formats={name: _first_line(model.__doc__) for name, model in RECORD_SCHEMAS.items()},
        harmful_schemas=HARMFUL_TEXT_SCHEMAS,
        default_config=next(name for name, c in manifest.configs.items() if c.default),
        fields={name: field_tables(RECORD_SCHEMAS[name]) for name in schemas if name in RECORD_SCHEMAS},
        examples={name: example_rows(folder, info.splits) for name, info in manifest.configs.items()},
        decodings=[(d, _shown(d.decoding.model_dump())) for d in stage_decodings(recipe)],
        generators=[(g, _shown(g.generation)) for g in manifest.generators],
        settings=[(spec, _settings(spec.params) or "-") for spec in recipe.stages],
        stage_summaries=[(spec, stage_summary(spec)) for spec in recipe.stages],
        output_summaries=[(spec, output_summary(spec)) for spec in recipe.outputs],
        deviations=[*recipe.card.deviations, *deviation_lines(recipe, manifest)],
        example_chars=EXAMPLE_CHARS,
    )
    return str(DatasetCard(re.sub(r"\n{3,}", "\n\n", body) + "\n"))


def stage_summary(stage: StageSpec) -> str:
    """What a stage did, in one line from its params (a recipe of no known method is described by these)."""
    model = STEP_PARAMS.get(stage.step)
    if model is None:
        return f"a step imported from `{stage.step}`"
    return model.model_validate(stage.params).summary()


def output_summary(output: OutputSpec) -> str:
    """What records a config holds, in one line from its exporter's params."""
    model = EXPORTER_PARAMS.get(output.exporter)
    if model is None:
        return _first_line(RECORD_SCHEMAS[EXPORTERS[output.exporter]].__doc__)
    return model.model_validate(output.params).summary()


def _source_line(recipe: Recipe, manifest: DatasetManifest) -> str:
    """Where the input rows came from, as a reader needs to know it (demo rows are not a Hub dataset)."""
    src = recipe.source
    if src.kind == "hub":
        read = manifest.source.get("read", f"hub:{src.dataset}")
        return (
            f"the Hub dataset [{src.dataset}](https://huggingface.co/datasets/{src.dataset}), split "
            f"`{src.split}`, read as `{read}`"
        )
    if src.kind == "bundled":
        return (
            f"a file bundled with safepref (`recipes/data/{src.path}`), written for this tool: "
            "not taken from a published dataset"
        )
    if src.kind == "file":
        return f"the local file `{Path(src.path or '').name}` (sha256 in Provenance below)"
    return "no input rows (the recipe generates everything)"


def field_tables(model: type[BaseModel]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(model name, [(field, type, description)]) for a record model and the record models inside it."""
    tables: list[tuple[str, list[tuple[str, str, str]]]] = []
    pending, seen = [model], set()
    while pending:
        current = pending.pop(0)
        if current.__name__ in seen:
            continue
        seen.add(current.__name__)
        rows = []
        for name, f in current.model_fields.items():
            rows.append((name, _type_name(f.annotation), (f.description or "").replace("|", "\\|")))
            pending += [m for m in _models_in(f.annotation) if m.__module__ == "schemas.records"]
        tables.append((current.__name__, rows))
    return tables


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " (nullable)"
    if origin is Literal:
        return "string: " + " / ".join(str(a) for a in get_args(annotation))
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return {str: "string", int: "int64", float: "float64", bool: "bool"}.get(annotation, str(annotation))


def example_rows(folder: Path, splits: dict[str, Any]) -> list[str]:
    """The first rows of a config as short JSON: long strings cut, provenance left out (it is in the manifest)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for split in splits.values():
        for file in split.files:
            for batch in pq.ParquetFile(folder / file).iter_batches(batch_size=EXAMPLE_ROWS):
                rows += batch.to_pylist()[: EXAMPLE_ROWS - len(rows)]
                break
            if len(rows) >= EXAMPLE_ROWS:
                break
    return [
        json.dumps(_cut({k: v for k, v in r.items() if k != "provenance"}), ensure_ascii=False, indent=1)
        for r in rows
    ]


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > EXAMPLE_CHARS:
        return value[:EXAMPLE_CHARS] + "…"
    if isinstance(value, list):
        return [_cut(v) for v in value]
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items() if v is not None}
    return value


def _first_line(doc: str | None) -> str:
    return (doc or "-").strip().splitlines()[0].replace("|", "\\|")


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if v not in (None, []))


def _settings(params: dict[str, Any]) -> str:
    """A stage's parameters as run, compact: long lists by their length, nested values as short JSON."""
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
