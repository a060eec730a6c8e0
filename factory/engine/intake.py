"""Source intake: every row's values are checked before any LLM work.

A row whose needed column is missing or null, or whose value in any column is of another kind than
the other rows' (an int or a list among strings) or is text that is not valid UTF-8 (a lone
surrogate), is quarantined at stage
`source` with the reason, and the offending value is made storable (None, or the text with the
surrogate escaped): left as it was, it crashed the run when distilabel built its dataset, after all
the LLM work.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from factory.core.errors import UserError
from factory.core.rows import RAW, ROW_ID, STATUS, mark
from factory.core.sources import SOURCE_STAGE, read_source
from factory.engine.column_flow import column_flow
from factory.engine.recipe import LoadedRecipe
from schemas.columns import is_bookkeeping


def read_rows(loaded: LoadedRecipe, *, allow_import_steps: bool) -> tuple[list[dict[str, Any]], str]:
    """The source rows as the run sees them (and `validate` checks them): read, ids unique, the
    recipe's columns checked against them (`column_flow`), every needed column present somewhere,
    unusable rows quarantined. Returns the rows and a label."""
    recipe = loaded.recipe
    rows, label = read_source(recipe.source, loaded.base_dir)
    ids = [str(r[ROW_ID]) for r in rows]
    if len(set(ids)) != len(ids):
        raise UserError(f"source.id_field {recipe.source.id_field!r} has duplicate values", where=label)
    kinds = column_kinds(rows)
    needed = column_flow(loaded, allow_import_steps=allow_import_steps, source=kinds)
    quarantine_unusable_rows(rows, needed, label, kinds)
    return rows, label


def column_kinds(rows: list[dict[str, Any]]) -> dict[str, str | None]:
    """Each column the rows hold (bookkeeping aside) -> the kind most of its values are (None: all null)."""
    columns = sorted({k for r in rows for k in r if not is_bookkeeping(k)})
    counts = {c: Counter(_kind(r[c]) for r in rows if r.get(c) is not None).most_common(1) for c in columns}
    return {c: (found[0][0] if found else None) for c, found in counts.items()}


def missing_column(column: str, reader: str, label: str) -> UserError:
    """`reader`: who needs it ("stage 'judge'", "output 'pairs'")."""
    return UserError(
        f"source has no column {column!r} (needed by {reader}); map one with source.field_map", where=label
    )


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | int | float):  # flags arrive as bools, 0/1 or numbers alike
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        if value.isascii():  # no surrogate, and no copy to find out (50,000 rows of 2 KB at paper scale)
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(v) for v in value.values())
    return False


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def quarantine_unusable_rows(
    rows: list[dict[str, Any]], needed: dict[str, str], label: str, kinds: dict[str, str | None]
) -> int:
    """Quarantine (in place) the `ok` rows with an unusable value; returns how many. Needed columns
    (-> who needs them) must hold a value; any column must hold one kind of value (`kinds`:
    `column_kinds`) and valid UTF-8 (other columns too: a mixed or unencodable column crashed
    distilabel's dataset). A column that no row has is the recipe's mistake, not the rows'."""
    for column, reader in needed.items():
        if rows and not any(column in r for r in rows):
            raise missing_column(column, reader, label)
    others = sorted({k for r in rows for k in r if k not in needed and not is_bookkeeping(k)})
    columns = [*needed, *others]
    bad = 0
    for index, row in enumerate(rows):
        first: tuple[str, str, Any] | None = None
        for column in columns:
            expected = kinds.get(column)
            problem = _problem(row, column, expected, needed=column in needed)
            if problem is None:
                continue
            original = row.get(column)
            row[column] = _escaped(original) if problem.startswith("invalid") else None  # storable
            first = first or (column, problem, original)
        if first is not None and row.get(STATUS) == "ok":
            column, problem, original = first
            mark(row, "quarantined", SOURCE_STAGE, f"row {index}: column {column!r} {problem}")
            row[RAW] = repr(original)[:4096]
            bad += 1
    return bad


def _problem(row: dict[str, Any], column: str, expected: str | None, *, needed: bool) -> str | None:
    value = row.get(column)
    if value is None:
        if not needed:
            return None
        return "is missing" if column not in row else "is null"
    if expected is not None and _kind(value) != expected:
        return f"holds {_kind(value)} ({type(value).__name__}) where the other rows hold {expected}"
    if _has_lone_surrogate(value):
        return "invalid UTF-8: a lone surrogate character"
    return None
