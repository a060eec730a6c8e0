"""Writes the Hub-ready dataset folder: parquet shards per config, quarantine, filtered, manifest, card."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from factory.core.rows import BOOKKEEPING, RAW, REASON, ROW_ID, STAGE, STATUS, RowFiltered
from factory.export.arrow import arrow_schema, with_hf_features, write_table
from factory.export.base import ExportContext, exporter_function
from schemas.recipe import OutputSpec
from schemas.registry import EXPORTER_PARAMS, EXPORTERS, RECORD_SCHEMAS

EXPORT_STAGE = "export"
_ACCOUNTING_FIELDS = [
    pa.field("_sp_id", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("raw_output", pa.string()),
    pa.field("input", pa.string()),
]


class ShardWriter:
    """Streams records of one config/split into parquet shards named `<split>-NNNNN-of-NNNNN.parquet`."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, rows_per_shard: int, chunk: int = 20_000):
        self.folder, self.split, self.schema = folder, split, schema
        self.rows_per_shard, self.chunk = rows_per_shard, min(chunk, rows_per_shard)
        self.buffer: list[dict[str, Any]] = []
        self.parts: list[Path] = []
        self.num_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, record: dict[str, Any]) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        while self.buffer:
            if self._writer is None:
                path = self.folder / f".part-{len(self.parts):05d}.parquet"
                self.parts.append(path)
                self._writer = pq.ParquetWriter(path, self.schema)
                self._in_shard = 0
            take = min(len(self.buffer), self.rows_per_shard - self._in_shard)
            batch, self.buffer = self.buffer[:take], self.buffer[take:]
            self._writer.write_table(pa.Table.from_pylist(batch, schema=self.schema))
            self._in_shard += take
            self.num_rows += take
            if self._in_shard >= self.rows_per_shard:
                self._writer.close()
                self._writer = None

    def close(self) -> list[str]:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.parts:  # an empty config still gets one (empty) shard so loaders find its schema
            path = self.folder / ".part-00000.parquet"
            write_table(path, self.schema, [])
            self.parts.append(path)
        names = []
        total = len(self.parts)
        for i, part in enumerate(self.parts):
            final = self.folder / f"{self.split}-{i:05d}-of-{total:05d}.parquet"
            part.replace(final)
            names.append(final.name)
        return names


@dataclass
class WriteResult:
    configs: dict[str, dict[str, Any]]
    output_rows: int
    filtered: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)


def _input_json(row: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in BOOKKEEPING}, default=str, ensure_ascii=False)


def write_records(
    out_dir: Path, rows: Iterable[dict[str, Any]], outputs: list[OutputSpec], ctx: ExportContext
) -> WriteResult:
    """Export every `ok` row to every output config; filtered/quarantined rows go to their own files.

    A row whose records fail schema validation in any config is quarantined (stage `export`) and
    written to no config, so the configs stay consistent with each other.
    """
    for spec in outputs:
        shutil.rmtree(out_dir / spec.config, ignore_errors=True)
    writers = {
        spec.config: ShardWriter(
            out_dir / spec.config,
            spec.split,
            arrow_schema(RECORD_SCHEMAS[EXPORTERS[spec.exporter]]),
            spec.rows_per_shard,
        )
        for spec in outputs
    }
    exporters = [(spec, exporter_function(spec.exporter), _with_params(ctx, spec)) for spec in outputs]
    filtered_rows: list[dict[str, Any]] = []
    quarantined_rows: list[dict[str, Any]] = []
    result = WriteResult(configs={}, output_rows=0)
    for row in rows:
        status = row.get(STATUS)
        if status == "ok":
            try:
                records = {spec.config: fn(row, spec_ctx) for spec, fn, spec_ctx in exporters}
            except RowFiltered as exc:  # an exporter's own rule (a generic exporter finding no pair)
                row[STATUS], row[STAGE], row[REASON] = "filtered", EXPORT_STAGE, exc.rule
                status = "filtered"
            except (ValidationError, KeyError, ValueError, TypeError) as exc:
                row[STATUS], row[STAGE] = "quarantined", EXPORT_STAGE
                row[REASON] = f"invalid record: {_short(exc)}"
                row[RAW] = row.get(RAW) or _input_json(row)
                status = "quarantined"
            else:
                for config, recs in records.items():
                    w = writers[config]
                    for rec in recs:
                        w.add(rec if isinstance(rec, dict) else rec.model_dump(mode="json"))
                result.output_rows += 1
                continue
        entry: dict[str, str | None] = {
            "_sp_id": str(row.get(ROW_ID)),
            "stage": str(row.get(STAGE) or "unknown"),
            "reason": str(row.get(REASON) or "unknown"),
            "raw_output": row.get(RAW),
            "input": _input_json(row),
        }
        if status == "filtered":
            filtered_rows.append(entry)
            rule = str(entry["reason"])
            result.filtered[rule] = result.filtered.get(rule, 0) + 1
        else:
            quarantined_rows.append(entry)
            stage = str(entry["stage"])
            result.quarantined[stage] = result.quarantined.get(stage, 0) + 1
    for spec in outputs:
        files = writers[spec.config].close()
        result.configs[spec.config] = {
            "schema": EXPORTERS[spec.exporter],
            "exporter": spec.exporter,
            "default": spec.default,
            "splits": {
                spec.split: {
                    "files": [f"{spec.config}/{f}" for f in files],
                    "num_rows": writers[spec.config].num_rows,
                }
            },
        }
    _write_accounting(out_dir / "filtered", filtered_rows, "rule")
    _write_accounting(out_dir / "quarantine", quarantined_rows, "reason")
    return result


def _with_params(ctx: ExportContext, spec: OutputSpec) -> ExportContext:
    """The run's context with this output's exporter params, validated once (not per row)."""
    model = EXPORTER_PARAMS.get(spec.exporter)
    return ctx if model is None else replace(ctx, params=model.model_validate(spec.params))


def _write_accounting(folder: Path, rows: list[dict[str, Any]], reason_name: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    schema = pa.schema(_ACCOUNTING_FIELDS)
    if reason_name != "reason":
        schema = schema.set(2, pa.field(reason_name, pa.string()))
        rows = [{**{k: v for k, v in r.items() if k != "reason"}, reason_name: r["reason"]} for r in rows]
    write_table(folder / "rows.parquet", with_hf_features(schema), rows)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}" if loc else err["msg"]
    return f"{type(exc).__name__}: {exc}"


def write_resolved_recipe(out_dir: Path, recipe_dump: dict[str, Any]) -> None:
    (out_dir / "recipe.resolved.yaml").write_text(
        yaml.safe_dump(recipe_dump, sort_keys=False, allow_unicode=True)
    )
