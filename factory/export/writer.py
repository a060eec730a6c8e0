"""Writes the Hub-ready dataset folder: parquet shards per config, quarantine, filtered, manifest, card."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ValidationError

from factory.core.config_files import format_validation_error
from factory.core.rows import BOOKKEEPING, RAW, REASON, ROW_ID, STAGE, STATUS, RowFiltered
from factory.export.arrow import arrow_array, arrow_schema, with_hf_features, write_table
from factory.export.base import Columns, ExportContext, Picked, exporter_function
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


class _Column:
    """One column's buffered values: the rows themselves, or, once a `Picked` part arrived, `values`
    and per row the index of its value in them."""

    def __init__(self, values: list[Any] | None = None, indices: list[int] | None = None) -> None:
        self.values: list[Any] = [] if values is None else values
        self.indices = indices

    def append(self, value: Any) -> None:
        if self.indices is not None:
            self.indices.append(len(self.values))
        self.values.append(value)

    def extend(self, values: list[Any]) -> None:
        if self.indices is not None:
            self.indices.extend(range(len(self.values), len(self.values) + len(values)))
        self.values.extend(values)

    def extend_picked(self, picked: Picked, start: int, stop: int) -> None:
        if self.indices is None:
            self.indices = list(range(len(self.values)))
        base = len(self.values)
        self.values.extend(picked.values)
        self.indices.extend([base + i for i in picked.indices[start:stop]])

    def split(self, rows: int) -> tuple[_Column, _Column]:
        """The first `rows` rows and the rest."""
        if self.indices is None:
            return _Column(self.values[:rows]), _Column(self.values[rows:])
        return _Column(self.values, self.indices[:rows]), _Column(self.values, self.indices[rows:])

    def to_arrow(self, type_: pa.DataType) -> pa.Array | tuple[pa.Array, pa.Array]:
        """The Arrow array, or its values and indices for `take` (which runs without the GIL)."""
        values = arrow_array(self.values, type_)
        return values if self.indices is None else (values, pa.array(self.indices, type=pa.int64()))


class ShardWriter:
    """Streams records of one config/split into parquet shards named `<split>-NNNNN-of-NNNNN.parquet`.

    Records are buffered column by column and written `chunk` at a time (a row group each), so the
    shards hold the same row groups whether records arrive one by one or as `Columns`. Placing the
    values of `Picked` columns and encoding parquet run on `io`, a one-thread executor, while this
    thread builds the next chunk (pyarrow does both without the GIL); one chunk per writer is in
    flight, so memory stays bounded.
    """

    def __init__(
        self,
        folder: Path,
        split: str,
        schema: pa.Schema,
        rows_per_shard: int,
        io: ThreadPoolExecutor,
        chunk: int = 20_000,
    ):
        self.folder, self.split, self.schema, self.io = folder, split, schema, io
        self.rows_per_shard, self.chunk = rows_per_shard, min(chunk, rows_per_shard)
        self.columns = {name: _Column() for name in schema.names}
        self.buffered = 0
        self.parts: list[Path] = []
        self.num_rows = 0
        self._writer: pq.ParquetWriter | None = None  # used on `io` only
        self._in_shard = 0
        self._pending: Future[None] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, record: dict[str, Any] | BaseModel) -> None:
        """A record as a dict (a missing field is null, as in pa.Table.from_pylist) or a model (stored as
        its `model_dump(mode="json")`, read field by field when the chunk is converted)."""
        if isinstance(record, BaseModel):
            for name, column in self.columns.items():
                column.append(getattr(record, name))
        else:
            for name, column in self.columns.items():
                column.append(record.get(name))
        self.buffered += 1
        if self.buffered >= self.chunk:
            self._flush()

    def add_columns(self, records: Columns) -> None:
        total, start = len(records), 0
        while start < total:
            take = min(total - start, self.chunk - self.buffered)
            whole = take == total  # the usual case: no slice to copy
            for name, column in self.columns.items():
                values = records.data.get(name)
                if isinstance(values, Picked):
                    column.extend_picked(values, start, start + take)
                elif values is None:
                    column.extend([None] * take)
                else:
                    column.extend(values if whole else values[start : start + take])
            self.buffered += take
            start += take
            if self.buffered >= self.chunk:
                self._flush()

    def _flush(self) -> None:
        while self.buffered:
            path = None
            if self._in_shard == 0:
                path = self.folder / f".part-{len(self.parts):05d}.parquet"
                self.parts.append(path)
            take = min(self.buffered, self.rows_per_shard - self._in_shard)
            if take == self.buffered:
                batch, self.columns = self.columns, {name: _Column() for name in self.schema.names}
            else:
                halves = {name: column.split(take) for name, column in self.columns.items()}
                batch = {name: first for name, (first, _) in halves.items()}
                self.columns = {name: rest for name, (_, rest) in halves.items()}
            self.buffered -= take
            arrays = [batch[f.name].to_arrow(f.type) for f in self.schema]
            del batch
            self._in_shard += take
            self.num_rows += take
            last = self._in_shard >= self.rows_per_shard
            if last:
                self._in_shard = 0
            self._submit(path, arrays, last)

    def _submit(self, path: Path | None, arrays: list[Any], last: bool) -> None:
        self.wait()
        self._pending = self.io.submit(self._write, path, arrays, last)

    def _write(self, path: Path | None, arrays: list[Any], last: bool) -> None:
        columns = [a[0].take(a[1]) if isinstance(a, tuple) else a for a in arrays]
        table = pa.Table.from_arrays(columns, schema=self.schema)
        if path is not None:
            self._writer = pq.ParquetWriter(path, self.schema)
        assert self._writer is not None
        self._writer.write_table(table)
        if last:
            self._writer.close()
            self._writer = None

    def wait(self) -> None:
        """Until the chunk in flight is written; a failed write raises here."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> list[str]:
        self._flush()
        self.wait()
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
    # one thread encodes parquet for every config while this one exports (ShardWriter)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="safepref-parquet") as io:
        writers = {
            spec.config: ShardWriter(
                out_dir / spec.config,
                spec.split,
                arrow_schema(RECORD_SCHEMAS[EXPORTERS[spec.exporter]]),
                spec.rows_per_shard,
                io,
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
                        if isinstance(recs, Columns):
                            w.add_columns(recs)
                            continue
                        for rec in recs:
                            w.add(rec)
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
        return format_validation_error(exc)
    return f"{type(exc).__name__}: {exc}"


def write_resolved_recipe(out_dir: Path, recipe_dump: dict[str, Any]) -> None:
    (out_dir / "recipe.resolved.yaml").write_text(
        yaml.safe_dump(recipe_dump, sort_keys=False, allow_unicode=True)
    )
