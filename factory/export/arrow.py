"""Arrow schemas derived from the record models, so every shard of a config has the same schema."""

from __future__ import annotations

import json
import types
from operator import attrgetter
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
                for name, f in _stored_fields(model).items()
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


def arrow_array(values: list[Any], type_: pa.DataType) -> pa.Array:
    """`pa.array(values, type_)` where values may be pydantic models (or lists of them), read as
    `model_dump(mode="json")` gives them (the record models hold only JSON types, see `_arrow_type`).
    A struct is built from its fields' columns: Arrow converted a dict per struct 2-3x slower than
    dumping and converting the columns (the six responses of 50,000 C²-Syn groups)."""
    if pa.types.is_struct(type_) and any(isinstance(v, BaseModel) for v in values):
        mask = _nulls(values)
        columns = _fields(values, [f.name for f in type_], plain=mask is None)
        children = [arrow_array(column, f.type) for column, f in zip(columns, type_, strict=True)]
        return pa.StructArray.from_arrays(children, fields=list(type_), mask=mask)
    if pa.types.is_list(type_) and any(isinstance(item, BaseModel) for v in values if v for item in v[:1]):
        offsets, items = [0], []  # type: list[int], list[Any]
        for v in values:
            items.extend(v or ())
            offsets.append(len(items))
        flat = arrow_array(items, type_.value_type)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat, type=type_, mask=_nulls(values))
    return pa.array(values, type=type_)


def _fields(values: list[Any], names: list[str], *, plain: bool) -> list[list[Any]]:
    """Per name, each value's field (None for a null value; a dict's key when dicts and models mix)."""
    if plain and all(isinstance(v, BaseModel) for v in values):
        return [list(map(attrgetter(name), values)) for name in names]
    return [
        [None if v is None else getattr(v, name) if isinstance(v, BaseModel) else v.get(name) for v in values]
        for name in names
    ]


def _nulls(values: list[Any]) -> pa.Array | None:
    return pa.array([v is None for v in values]) if any(v is None for v in values) else None


def _stored_fields(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields. A model whose dump differs from its attributes (computed fields, custom
    serializers, aliases) is refused: the writer reads the attributes (`arrow_array`)."""
    decorators = model.__pydantic_decorators__
    aliased = [n for n, f in model.model_fields.items() if f.alias not in (None, n)]
    if model.model_computed_fields or decorators.field_serializers or decorators.model_serializers or aliased:
        raise TypeError(f"{model.__name__} is not storable: its dump is not its fields")
    return dict(model.model_fields)


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
        return pa.struct(
            [pa.field(n, _arrow_type(f.annotation)) for n, f in _stored_fields(annotation).items()]
        )
    simple = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"no Arrow type for {annotation!r}")
