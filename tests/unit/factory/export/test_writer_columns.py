"""The writer's fast paths write the bytes its plain path writes: records given as models (read field by
field) or as C²-Syn columns (`Columns`, `Picked`) give the same shards, row groups included, as the
same records given as dicts (`model_dump(mode="json")`, one dict per pair)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, computed_field

from factory.export.arrow import arrow_schema
from factory.export.base import ExportContext
from factory.export.c2syn import c2syn_pairs, c2syn_pairs_conversational
from factory.export.writer import ShardWriter
from factory.steps.c2syn.steps import build_group
from schemas.generation import GenerationParams
from schemas.provenance import StageDecoding
from schemas.records import (
    C2Group,
    ConversationalPair,
    PreferencePair,
    PromptResponse,
    SafetyTriple,
    Score,
    conversational_pair,
)
from tests.support.trainer_fixtures import c2_group, provenance, safety_triple

CTX = ExportContext(
    recipe_name="fixture",
    recipe_hash="0" * 64,
    seed=3,
    generator_model="fixture-model",
    decoding=GenerationParams(max_new_tokens=8, stop=["\n\n", "###"]),
    stages=(
        StageDecoding(stage="generate", role="generation", model="m", decoding=GenerationParams(stop=["x"])),
        StageDecoding(stage="judge", role="judge", model="j", revision="r1", decoding=GenerationParams()),
    ),
)


def _shards(folder: Path, schema: Any, add: Any, *, chunk: int, rows_per_shard: int) -> list[bytes]:
    with ThreadPoolExecutor(max_workers=1) as io:
        writer = ShardWriter(folder, "train", schema, rows_per_shard, io, chunk=chunk)
        add(writer)
        names = writer.close()
    return [(folder / name).read_bytes() for name in names]


def _finished_row(i: int) -> dict[str, Any]:
    """A finished c2syn row (the columns `build_group` reads), made from a valid fixture group."""
    g = c2_group(i)
    syn = g.responses[1:5]
    truncation = {
        "mode": "strict",
        "t": g.delimiter_count,
        "t_k": g.t_k,
        "cuts": [r.cut_char for r in syn],
        "openers": [r.opener for r in syn],
        "triggers": [r.trigger for r in syn],
    }
    return {
        "_sp_id": f"s{i}",
        "prompt": g.prompt,
        "fhr": g.responses[5].text,
        "truncation": json.dumps(truncation),
        "sr": g.responses[0].text,
        "continuations": [r.continuation for r in syn],
    }


@pytest.mark.parametrize(("chunk", "rows_per_shard"), [(7, 10), (20_000, 100_000)])
def test_pairs_given_as_columns_are_written_as_one_dict_per_pair(
    tmp_path: Path, chunk: int, rows_per_shard: int
) -> None:
    rows = [_finished_row(i) for i in range(5)]
    groups = [
        C2Group.model_validate({**build_group(r, CTX.seed), "provenance": CTX.provenance(r["_sp_id"])})
        for r in rows
    ]
    for exporter, record_schema, as_dicts in (
        (c2syn_pairs, PreferencePair, lambda g: g.pair_records()),
        (
            c2syn_pairs_conversational,
            ConversationalPair,
            lambda g: [conversational_pair(p) for p in g.pair_records()],
        ),
    ):
        schema = arrow_schema(record_schema)
        fast = _shards(
            tmp_path / f"{exporter.__name__}-columns",
            schema,
            lambda w, exporter=exporter: [w.add_columns(exporter(r, CTX)) for r in rows],  # type: ignore[misc]
            chunk=chunk,
            rows_per_shard=rows_per_shard,
        )
        plain = _shards(
            tmp_path / f"{exporter.__name__}-dicts",
            schema,
            lambda w, as_dicts=as_dicts: [w.add(d) for g in groups for d in as_dicts(g)],  # type: ignore[misc]
            chunk=chunk,
            rows_per_shard=rows_per_shard,
        )
        assert len(fast) == len(plain) == (8 if chunk == 7 else 1)
        assert fast == plain


def _triple_variants() -> list[SafetyTriple]:
    base = safety_triple(0)
    return [
        base,
        base.model_copy(update={"toxic_spans": [], "scores": [Score(name="harm", value=0.5)]}),
        base.model_copy(update={"toxic_spans": [base.toxic_spans[0].model_copy(update={"label": None})]}),
    ]


@pytest.mark.parametrize(
    "records",
    [
        [c2_group(i).model_copy(update={"provenance": CTX.provenance(f"s{i}")}) for i in range(4)],
        _triple_variants(),
        [PromptResponse(prompt="p", response="", source_id="1", provenance=provenance("1"))],
    ],
    ids=["c2_group", "safety_triple", "prompt_response"],
)
def test_records_given_as_models_are_written_as_their_json_dumps(
    tmp_path: Path, records: list[BaseModel]
) -> None:
    schema = arrow_schema(type(records[0]))
    as_models = _shards(
        tmp_path / "models", schema, lambda w: [w.add(r) for r in records], chunk=2, rows_per_shard=3
    )
    as_dumps = _shards(
        tmp_path / "dumps",
        schema,
        lambda w: [w.add(r.model_dump(mode="json")) for r in records],
        chunk=2,
        rows_per_shard=3,
    )
    assert as_models == as_dumps


def test_a_record_model_whose_dump_is_not_its_fields_is_not_storable() -> None:
    class Derived(BaseModel):
        text: str

        @computed_field  # type: ignore[prop-decorator]
        @property
        def length(self) -> int:
            return len(self.text)

    with pytest.raises(TypeError, match="Derived is not storable"):
        arrow_schema(Derived)
