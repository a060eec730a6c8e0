"""Column names: the engine's bookkeeping prefix (one rule, read by the recipe's validators, the
steps, the engine and the trainers) and the name a recipe may give a column."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Every row's bookkeeping columns (`_sp_id`, `_sp_status`, ...: factory/core/rows.py) start with it;
# no source or recipe column may.
BOOKKEEPING_PREFIX = "_sp_"


def is_bookkeeping(name: object) -> bool:
    return str(name).startswith(BOOKKEEPING_PREFIX)


def _not_bookkeeping(name: str) -> str:
    if is_bookkeeping(name):
        raise ValueError(
            f"column {name!r}: names starting with {BOOKKEEPING_PREFIX} are the engine's bookkeeping"
        )
    return name


# A column a recipe names: an identifier (templates and expressions read it by name), never bookkeeping.
Column = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"), AfterValidator(_not_bookkeeping)
]
