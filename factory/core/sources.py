"""Read a recipe's source rows (local file, bundled file, Hub dataset) and apply the field mapping."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factory.core.config_files import format_validation_error, load_yaml
from factory.core.errors import UserError
from factory.core.rows import REASON, ROW_ID, STAGE, STATUS
from schemas.columns import BOOKKEEPING_PREFIX, is_bookkeeping
from schemas.recipe import SourceSpec

SOURCE_STAGE = "source"


def bundled_data_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("recipes") / "data"))


def source_path(spec: SourceSpec, base_dir: Path) -> Path:
    assert spec.path is not None
    if spec.kind == "bundled":
        return bundled_data_dir() / spec.path
    path = Path(spec.path)
    return path if path.is_absolute() else base_dir / path


def read_source(spec: SourceSpec, base_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """Rows with `_sp_id`/`_sp_status` set and the field mapping applied, plus a label for messages."""
    if spec.kind == "none":
        return [], "(no source)"
    raw: Iterable[dict[str, Any]]
    if spec.kind == "hub":
        raw, revision = _read_hub(spec)
        label = f"hub:{spec.dataset}" + (f"@{revision}" if revision else "")
    else:
        path = source_path(spec, base_dir)
        label = str(path)
        raw = _read_records(path, spec) if spec.records_key or spec.file_schema else _read_file(path)
    rows = []
    for index, record in enumerate(raw):
        if spec.limit is not None and index >= spec.limit:
            break
        rows.append(_map_row(record, spec, index, label))
    _mark_duplicates(rows, spec)
    return rows, label


def _map_row(record: dict[str, Any], spec: SourceSpec, index: int, label: str) -> dict[str, Any]:
    reserved = next((k for k in [*record, *spec.field_map] if is_bookkeeping(k)), None)
    if reserved is not None:  # it would pass for the engine's own bookkeeping and forge the statistics
        raise UserError(
            f"row {index}: column {reserved!r} uses the prefix `{BOOKKEEPING_PREFIX}`, reserved for the "
            "engine's bookkeeping; rename or drop it",
            where=label,
        )
    row = dict(record)
    for target, column in spec.field_map.items():
        if column not in record:
            raise UserError(f"row {index}: column {column!r} (field_map.{target}) is missing", where=label)
        row[target] = record[column]
    if spec.id_field is not None:
        if spec.id_field not in record:
            raise UserError(f"row {index}: id_field {spec.id_field!r} is missing", where=label)
        row_id = str(record[spec.id_field])
    else:
        row_id = str(index)
    row[ROW_ID] = row_id
    row[STATUS] = "ok"
    row[STAGE] = None
    row[REASON] = None
    return row


def _mark_duplicates(rows: list[dict[str, Any]], spec: SourceSpec) -> None:
    if spec.dedup_on is None:
        return
    seen: set[str] = set()
    for row in rows:
        key = str(row.get(spec.dedup_on))
        if key in seen:
            row[STATUS], row[STAGE], row[REASON] = "filtered", SOURCE_STAGE, f"duplicate_{spec.dedup_on}"
        seen.add(key)


def _read_file(path: Path) -> Iterable[dict[str, Any]]:
    if not path.is_file():
        raise UserError("source file not found" if not path.exists() else "not a file", where=str(path))
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".parquet", ".csv"):
        raise UserError(
            f"unsupported source format {suffix!r} (use .jsonl, .json, .parquet or .csv)", where=str(path)
        )
    if suffix == ".parquet":
        from factory.core.parquet_files import read_parquet

        return read_parquet(path).to_pylist()  # type: ignore[no-any-return]
    content = path.read_bytes()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise UserError(f"line {line}: not UTF-8 text (byte {exc.start})", where=str(path)) from None
    if suffix == ".jsonl":
        return list(_read_jsonl(text, path))
    if suffix == ".csv":
        try:
            return list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise UserError(f"invalid CSV: {exc}", where=str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"line {exc.lineno}: invalid JSON ({exc.msg})", where=str(path)) from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError("a .json source must hold a list of objects", where=str(path))
    return data


def _read_records(path: Path, spec: SourceSpec) -> list[dict[str, Any]]:
    """A YAML/JSON mapping file, validated against `file_schema`; its `records_key` list becomes the rows.

    The other top-level keys and `source_sha256` (the file's hash) are copied onto every row, so each
    step sees the whole seed and every derived row records which file it came from.
    """
    if not path.is_file():
        raise UserError("source file not found", where=str(path))
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise UserError("records_key/file_schema need a .yaml, .yml or .json file", where=str(path))
    content = path.read_bytes()
    data = load_yaml(content, where=str(path))
    if not isinstance(data, dict):
        raise UserError("expected a mapping at the top level", where=str(path))
    if spec.file_schema is not None:
        from schemas.registry import SEED_FILE_SCHEMAS

        try:
            data = SEED_FILE_SCHEMAS[spec.file_schema].model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            raise UserError(format_validation_error(exc), where=str(path)) from None
    key = spec.records_key
    if key is None:
        return [data]
    records = data.get(key)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(f"records_key {key!r} must name a list of mappings", where=str(path))
    shared = {k: v for k, v in data.items() if k != key}
    shared["source_sha256"] = hashlib.sha256(content).hexdigest()
    return [{**shared, **record} for record in records]


def _read_jsonl(text: str, path: Path) -> Iterable[dict[str, Any]]:
    for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON text may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"line {lineno}: invalid JSON ({exc.msg})", where=str(path)) from None
        if not isinstance(obj, dict):
            raise UserError(f"line {lineno}: expected a JSON object", where=str(path))
        yield obj


def resolve_hub_revision(spec: SourceSpec) -> str | None:
    """The commit sha `spec.revision` names on the Hub now (see `resolve_dataset_revision`)."""
    if spec.kind != "hub" or spec.dataset is None:
        return None
    return resolve_dataset_revision(spec.dataset, spec.revision)


def resolve_dataset_revision(repo_id: str, revision: str | None) -> str | None:
    """The commit sha `revision` (a branch, tag or sha; None = main) of a Hub dataset names now, or
    None when the Hub cannot be asked (offline): the caller then reads the revision as given."""
    from huggingface_hub import HfApi

    try:
        sha = HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception:  # offline, or a server without this route: the download reports real errors
        return None
    return str(sha) if sha else None


def _read_hub(spec: SourceSpec) -> tuple[Iterable[dict[str, Any]], str | None]:
    """The split's rows and the revision read (the resolved commit sha when the Hub could say)."""
    import datasets

    # read the commit resolved now, so the recorded revision is exactly what was read
    revision = resolve_hub_revision(spec) or spec.revision
    try:
        ds = datasets.load_dataset(spec.dataset, spec.name, split=spec.split, revision=revision)
    except Exception as exc:  # network, missing repo, bad split: all user-fixable
        raise UserError(
            f"cannot load split {spec.split!r}: {str(exc).splitlines()[0]} ({type(exc).__name__})",
            where=f"hub:{spec.dataset}",
        ) from None
    return ds, revision  # read_source stops at `limit` while iterating
