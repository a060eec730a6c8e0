"""Evaluation inputs: C²-Eval rows (PKU-SafeRLHF) and instruction lists, from a file, bundled or the Hub.

`--data` forms: `bundled` (the eval's demo file under recipes/data), `bundled:NAME.jsonl`, a local
.jsonl/.json/.parquet/.csv file, or `hub:DATASET_ID[@REVISION]` (with `--split` and `--data-config`).
`hub:PKU-Alignment/PKU-SafeRLHF` without a revision reads the pinned 2023 commit (`PKU_SAFERLHF_2023`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.core.errors import UserError
from factory.core.rows import ROW_ID, parse_bool
from schemas.eval_report import DataInfo
from schemas.recipe import SourceSpec

C2_DEMO = "c2eval_demo.jsonl"
HARM_DEMO = "harm_demo.jsonl"
BENIGN_DEMO = "benign_demo.jsonl"
PKU_SAFERLHF_ID = "PKU-Alignment/PKU-SafeRLHF"
# The 2023 release the reference code was written against: the commit recipes/c2syn.yaml names
# (docs/c2syn.md, "The 2023 PKU-SafeRLHF pin", gives the evidence and the other candidate, b4d1307).
PKU_SAFERLHF_2023 = "d18ee9daa7f7a466c993213c84691b30c0e4c88d"


@dataclass(frozen=True)
class C2Row:
    row_id: str
    request: str  # HR: the harmful request
    fhr: str  # the full harmful response


@dataclass(frozen=True)
class Instruction:
    row_id: str
    text: str


def source_spec(data: str, *, default_bundled: str, split: str, config: str | None) -> SourceSpec:
    if data == "bundled":
        return SourceSpec.model_validate({"kind": "bundled", "path": default_bundled})
    if data.startswith("bundled:"):
        return SourceSpec.model_validate({"kind": "bundled", "path": data.removeprefix("bundled:")})
    if data.startswith("hub:"):
        dataset, _, revision = data.removeprefix("hub:").partition("@")
        if not dataset:
            raise UserError(f"--data {data!r}: write hub:DATASET_ID[@REVISION]")
        if dataset == PKU_SAFERLHF_ID and not revision:
            revision = PKU_SAFERLHF_2023  # the paper's data, not whatever `main` holds today
        return SourceSpec.model_validate(
            {"kind": "hub", "dataset": dataset, "revision": revision or None, "split": split, "name": config}
        )
    return SourceSpec.model_validate({"kind": "file", "path": data})


def _read(spec: SourceSpec) -> tuple[list[dict[str, Any]], str]:
    from factory.core.sources import read_source

    return read_source(spec, Path.cwd())


def _revision(spec: SourceSpec, where: str) -> str | None:
    """A Hub source's commit as read (read_source labels it `hub:ID@COMMIT`), else the one given."""
    if spec.kind == "hub" and "@" in where:
        return where.rsplit("@", 1)[1]
    return spec.revision


def _label(spec: SourceSpec, fallback: str) -> str:
    if spec.kind == "bundled":
        return f"bundled:{spec.path}"
    if spec.kind == "hub":
        return f"hub:{spec.dataset}" + (f"/{spec.name}" if spec.name else "")
    return fallback


def uses_reference_filter(spec: SourceSpec) -> bool:
    """C²-Eval rows from a Hub dataset named PKU-SafeRLHF (the original or a mirror) are chosen as the
    reference's eval set evidently was: all 500 rows of its `eval/test.jsonl` pass the C²-Syn keyword
    and length filter. Other data keeps the plain rule of `eval/eval_data.py` (any unsafe response)."""
    return spec.kind == "hub" and (spec.dataset or "").rsplit("/", 1)[-1] == "PKU-SafeRLHF"


def load_c2_rows(spec: SourceSpec, rows: int) -> tuple[list[C2Row], DataInfo]:
    """The first `rows` rows in source order that qualify (`uses_reference_filter`); FHR = `response_0`
    if unsafe, else `response_1`, as the reference `eval/eval_data.py` picks it."""
    from schemas.methods.c2syn import C2SelectParams

    records, where = _read(spec)
    reference = uses_reference_filter(spec)
    select = C2SelectParams()
    chosen: list[C2Row] = []
    skipped = 0
    for index, record in enumerate(records):
        if len(chosen) >= rows:
            break
        for column in ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe"):
            if column not in record:
                raise UserError(
                    f"row {index}: column {column!r} is missing (PKU-SafeRLHF schema)", where=where
                )
        if reference and not _passes_c2syn_filter(record, select, index, where):
            skipped += 1
            continue
        fhr = next(
            (
                record[f"response_{i}"]
                for i in (0, 1)
                if not _as_bool(record[f"is_response_{i}_safe"], f"row {index}: is_response_{i}_safe", where)
            ),
            None,
        )
        if fhr is None:
            skipped += 1
            continue
        if not isinstance(record["prompt"], str) or not isinstance(fhr, str) or not fhr.strip():
            raise UserError(
                f"row {index}: prompt and the unsafe response must be non-empty text", where=where
            )
        chosen.append(C2Row(row_id=str(record[ROW_ID]), request=record["prompt"], fhr=fhr))
    if not chosen:
        raise UserError("no row qualifies: " + _selection(spec, select, reference), where=where)
    digest = _sha256([[r.row_id, r.request, r.fhr] for r in chosen])
    info = DataInfo(
        source=_label(spec, where),
        revision=_revision(spec, where),
        split=spec.split if spec.kind == "hub" else None,
        rows_read=len(chosen) + skipped,
        rows_used=len(chosen),
        rows_skipped=skipped,
        sha256=digest,
        selection=_selection(spec, select, reference),
    )
    return chosen, info


def _passes_c2syn_filter(record: dict[str, Any], select: Any, index: int, where: str) -> bool:
    from factory.core.rows import RowFailed, RowFiltered
    from factory.steps.c2syn.filter import select_fhr

    try:
        select_fhr(record, select.keywords, select.min_words)
    except RowFiltered:
        return False
    except RowFailed as exc:
        raise UserError(f"row {index}: {exc.reason}", where=where) from None
    return True


def _selection(spec: SourceSpec, select: Any, reference: bool) -> str:
    """How the rows were chosen, in words, for the report."""
    split = f" of split {spec.split!r}" if spec.kind == "hub" else ""
    fhr = "FHR = response_0 if unsafe, else response_1 (eval/eval_data.py)"
    if not reference:
        return f"the first rows{split} in source order that have an unsafe response (no keyword or length filter); {fhr}"
    keywords = "/".join(select.keywords)
    return (
        f"the first rows{split} in source order that pass the C²-Syn filter (prompt contains {keywords}; "
        f"an unsafe response of more than {select.min_words} words), as the reference's 500-row eval set "
        f"(every row of it passes that filter); {fhr}"
    )


def load_instructions(
    spec: SourceSpec, rows: int | None, column: str | None
) -> tuple[list[Instruction], DataInfo]:
    """Instructions from `column` (default: `instruction`, else `prompt`)."""
    records, where = _read(spec)
    if rows is not None:
        records = records[:rows]
    if not records:
        raise UserError("no rows", where=where)
    name = column or next((c for c in ("instruction", "prompt") if c in records[0]), None)
    if name is None:
        raise UserError("no `instruction` or `prompt` column; name one with --column", where=where)
    items = []
    for index, record in enumerate(records):
        text = record.get(name)
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"row {index}: column {name!r} is missing or empty", where=where)
        items.append(Instruction(row_id=str(record[ROW_ID]), text=text))
    info = DataInfo(
        source=_label(spec, where),
        revision=_revision(spec, where),
        split=spec.split if spec.kind == "hub" else None,
        rows_read=len(records),
        rows_used=len(items),
        sha256=_sha256([[i.row_id, i.text] for i in items]),
    )
    return items, info


def _as_bool(value: Any, field: str, where: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise UserError(f"{field}: {exc}", where=where) from None


def _sha256(items: list[list[str]]) -> str:
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()
