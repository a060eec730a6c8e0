"""Generic exporters recipe authors compose (declared in `schemas/methods/generic.py`)."""

from __future__ import annotations

from typing import Any

from factory.export.base import ExportContext, Record
from schemas.records import PromptResponse


def generate_responses(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return [
        PromptResponse(
            prompt=row["prompt"],
            response=row["response"],
            source_id=str(row["_sp_id"]),
            provenance=ctx.provenance(str(row["_sp_id"])),
        )
    ]
