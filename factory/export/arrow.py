"""Arrow schemas derived from the record models, so every shard of a config has the same schema."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    return with_hf_features(
        pa.schema(
            [
                pa.field(name, _arrow_type(f.annotation), nullable=True)
                for name, f in model.model_fields.items()
            ]
        )
    )


def with_hf_features(schema: pa.Schema) -> pa.Schema:
    """The schema with Hugging Face `features` in its metadata, as `datasets` writes them, so loaders
    (and the Hub's viewer) read the declared types instead of guessing them from the Arrow types."""
    from datasets import Features

    features = Features.from_arrow_schema(schema)
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features.to_dict()}})})


def write_table(path: Path, schema: pa.Schema, rows: list[dict[str, Any]]) -> None:
    """One parquet file; an empty table is written as `datasets` writes one, with no row group: a
    single zero-row group makes `datasets`' parquet reader fail ("BatchSize must be greater than 0")."""
    with pq.ParquetWriter(path, schema) as writer:
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))


def _arrow_type(annotation: Any) -> pa.DataType:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unions other than Optional are not storable: {annotation}")
        return _arrow_type(args[0])
    if origin is Literal:
        return pa.string()
    if origin is list:
        (item,) = get_args(annotation)
        return pa.list_(_arrow_type(item))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct([pa.field(n, _arrow_type(f.annotation)) for n, f in annotation.model_fields.items()])
    simple = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"no Arrow type for {annotation!r}")
