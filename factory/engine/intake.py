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
from collections.abc import Sequence
from typing import Any

from factory.core.errors import UserError
from factory.core.rows import RAW, ROW_ID, STATUS, mark
from factory.core.sources import SOURCE_STAGE, read_source
from factory.engine.recipe import LoadedRecipe
from schemas.columns import is_bookkeeping


def read_rows(loaded: LoadedRecipe, *, allow_import_steps: bool) -> tuple[list[dict[str, Any]], str]:
    """The source rows as the run sees them (and `validate` checks them): read, ids unique, every
    needed column present somewhere, unusable rows quarantined. Returns the rows and a label."""
    from factory.steps.registry import resolve_step_class

    recipe = loaded.recipe
    rows, label = read_source(recipe.source, loaded.base_dir)
    ids = [str(r[ROW_ID]) for r in rows]
    if len(set(ids)) != len(ids):
        raise UserError(f"source.id_field {recipe.source.id_field!r} has duplicate values", where=label)
    stages = [
        (s.name, resolve_step_class(s.step, allow_import=allow_import_steps), s.params) for s in recipe.stages
    ]
    quarantine_unusable_rows(rows, needed_columns(stages), label)
    return rows, label


def needed_columns(stages: Sequence[tuple[str, type, dict[str, Any]]]) -> dict[str, str]:
    """Column -> the first stage that reads it, for the columns no earlier stage produces: the source
    must provide them. `stages`: (stage name, step class, params); a safepref step names its columns
    for its params (`columns`), another step by its `required` / `produced` attributes."""
    produced: set[str] = set()
    needed: dict[str, str] = {}
    for stage, cls, params in stages:
        columns = getattr(cls, "columns", None)
        try:
            reads, writes = (
                columns(params) if columns else (getattr(cls, "required", ()), getattr(cls, "produced", ()))
            )
        except ValueError as exc:  # e.g. an expression naming a filter the sandbox does not offer
            raise UserError(f"stages[{stage}].params: {exc}") from None
        for column in reads:
            if column not in produced and not is_bookkeeping(column):
                needed.setdefault(column, stage)
        produced.update(writes)
    return needed


def missing_column(column: str, stage: str, label: str) -> UserError:
    return UserError(
        f"source has no column {column!r} (needed by stage {stage!r}); map one with source.field_map",
        where=label,
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


def quarantine_unusable_rows(rows: list[dict[str, Any]], needed: dict[str, str], label: str) -> int:
    """Quarantine (in place) the `ok` rows with an unusable value; returns how many. Needed columns
    must hold a value; any column must hold one kind of value and valid UTF-8 (other columns too: a
    mixed or unencodable column crashed distilabel's dataset). A column that no row has is the
    recipe's mistake, not the rows'."""
    for column, stage in needed.items():
        if rows and not any(column in r for r in rows):
            raise missing_column(column, stage, label)
    others = sorted({k for r in rows for k in r if k not in needed and not is_bookkeeping(k)})
    columns = [*needed, *others]
    kinds = {c: Counter(_kind(r[c]) for r in rows if r.get(c) is not None).most_common(1) for c in columns}
    bad = 0
    for index, row in enumerate(rows):
        first: tuple[str, str, Any] | None = None
        for column in columns:
            expected = kinds[column][0][0] if kinds[column] else None
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
