"""The recipe's columns from the source through every stage into the outputs, checked before any LLM
work (`validate` and `run` both): a mistake here would otherwise surface as every row quarantined
mid-run, or after it, at export.

A stage reads and writes the columns its step declares for its params (`SafeprefStep.columns`:
for a generic step the columns its params name and its template reads); an output reads those its
exporter's params name (`ExporterParams.columns_read`). The recipe is refused, one line naming the
stage or output and the param, when
- a generic stage writes a column the source or an earlier stage provides (it would replace it);
- a column has the name of a variable the step gives its template (`item`, `index`, `criterion`):
  the template could not see it;
- a column read as a list (`each`, rank's `column`, an exporter's `responses_column`, ...) is written
  by an earlier stage with one value per row, or holds something else in the source.
What the source must provide (read by a stage or an output, produced by no earlier stage) is
returned for intake to check row by row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.core.errors import UserError
from factory.engine.recipe import LoadedRecipe
from schemas.columns import is_bookkeeping
from schemas.registry import EXPORTER_PARAMS, STEP_PARAMS


def column_flow(
    loaded: LoadedRecipe, *, allow_import_steps: bool, source: Mapping[str, str | None] | None
) -> dict[str, str]:
    """Column -> its first reader ("stage 'x'", "output 'y'") for each column the source must
    provide. `source`: the source's columns and the kind of their values ("text", "list", ...; None
    when every value is null), or None when the source is not read (a Hub source at `validate`)."""
    from factory.steps.registry import resolve_step_class

    recipe, where_file = loaded.recipe, str(loaded.path)
    provided = dict(source or {})
    written: dict[str, str] = {}  # column -> the stage that last wrote it
    single: set[str] = set()  # columns written with one value per row
    needed: dict[str, str] = {}

    def refuse(message: str) -> UserError:
        return UserError(message, where=where_file)

    def check_lists(place: str, params: Any) -> None:
        for field, column in params.list_columns().items():
            if column in single:
                raise refuse(
                    f"{place}.params.{field}: column {column!r} holds one value per row (stage "
                    f"{written[column]!r} writes it so), not a list"
                )
            kind = provided.get(column)
            if column not in written and kind not in (None, "list"):
                raise refuse(
                    f"{place}.params.{field}: column {column!r} holds {kind} in the source, not lists"
                )

    for stage in recipe.stages:
        place = f"stages[{stage.name}]"
        cls = resolve_step_class(stage.step, allow_import=allow_import_steps)
        reads, writes = _stage_columns(cls, stage.params, str(loaded.base_dir), place, refuse)
        for column in reads:
            if column not in written and not is_bookkeeping(column):
                needed.setdefault(column, f"stage {stage.name!r}")
        model = STEP_PARAMS.get(stage.step)
        params = model.model_validate(stage.params) if model is not None else None
        if params is not None:
            check_lists(place, params)
            for variable in params.template_variables():
                if variable in written or variable in provided:
                    origin = f"stage {written[variable]!r}" if variable in written else "the source"
                    raise refuse(
                        f"{place}: column {variable!r} (from {origin}) has the name of a variable the step "
                        f"gives its template, which would hide it; rename the column"
                    )
            if params.writes_new_columns:
                for column in writes:
                    if column in written or column in provided:
                        origin = f"stage {written[column]!r}" if column in written else "the source"
                        raise refuse(
                            f"{place}: writes column {column!r}, which {origin} provides; write to a new "
                            "column (a stage never replaces one)"
                        )
        values = set(params.value_columns()) if params is not None else set()
        for column in writes:
            written[column] = stage.name
            single.discard(column)
        single.update(values)
    for output in recipe.outputs:
        exporter_model = EXPORTER_PARAMS.get(output.exporter)
        if exporter_model is None:
            continue
        exporter_params = exporter_model.model_validate(output.params)
        for column in exporter_params.columns_read():
            if column not in written and not is_bookkeeping(column):
                needed.setdefault(column, f"output {output.config!r}")
        check_lists(f"outputs[{output.config}]", exporter_params)
    return needed


def _stage_columns(
    cls: type, params: dict[str, Any], template_dir: str, place: str, refuse: Any
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A safepref step names its columns for its params (`columns`), another step by its `required` /
    `produced` attributes."""
    columns = getattr(cls, "columns", None)
    if columns is None:
        return tuple(getattr(cls, "required", ())), tuple(getattr(cls, "produced", ()))
    try:
        reads, writes = columns(params, template_dir)
    except ValueError as exc:  # e.g. an expression naming a filter the sandbox does not offer
        raise refuse(f"{place}.params: {exc}") from None
    return tuple(reads), tuple(writes)
