"""`filter`: keep the rows that meet every rule (keywords, regex, length bounds, a sandboxed expression).

The first rule a row fails filters it under the rule's name (the manifest counts rows per rule). An
expression is Jinja2's expression language evaluated in jinja2's immutable sandbox over the row's
columns: no Python `eval`, no attribute access to internals, no mutation, and bounded `*` / `**` so
an expression cannot allocate without limit. A value a rule cannot read (a number where text is
expected, an expression that fails on the row) quarantines the row with the reason.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import PrivateAttr

from factory.core.rows import own_columns
from factory.steps.base import RowFailed, RowFiltered, SafeprefStep
from schemas.generic_params import FilterParams, FilterRule

# what an expression may call besides the row's columns (Jinja2's filters come on top: `x | length`)
EXPRESSION_GLOBALS: dict[str, Any] = {
    "len": len, "min": min, "max": max, "abs": abs, "sum": sum, "round": round, "any": any, "all": all,
}  # fmt: skip
MAX_SEQUENCE = 1_000_000  # longest string or list `*` may build
MAX_EXPONENT = 64


class ExpressionSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with `*` and `**` bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is above {MAX_EXPONENT}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_SEQUENCE
                ):
                    raise SecurityError(f"`*` would build a sequence longer than {MAX_SEQUENCE:,}")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def sandbox() -> ExpressionSandbox:
    env = ExpressionSandbox(undefined=StrictUndefined)
    env.globals.clear()  # jinja2's default globals (range, dict, lipsum, cycler, ...) are not needed
    env.globals.update(EXPRESSION_GLOBALS)
    return env


@lru_cache(maxsize=256)
def compiled(expression: str) -> Any:
    return sandbox().compile_expression(expression, undefined_to_none=False)


def expression_columns(expression: str) -> set[str]:
    """The names an expression reads that are not its globals: the row columns it needs."""
    env = sandbox()
    return meta.find_undeclared_variables(env.parse("{{ (" + expression + ") }}")) - set(env.globals)


def evaluate(expression: str, row: dict[str, Any]) -> Any:
    """The expression's value over the row's columns (bookkeeping columns are not visible)."""
    return compiled(expression)(**own_columns(row))


def texts(value: Any, column: str) -> list[str]:
    """The text(s) a rule reads: a string, or every item of a list of strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise RowFailed(f"column {column!r} holds {type(value).__name__}, not text or a list of texts")


def passes(rule: FilterRule, row: dict[str, Any]) -> bool:
    """Whether the row meets the rule (RowFailed when the rule cannot read the row)."""
    kind = rule.kind()
    if kind == "expression":
        try:
            return bool(evaluate(rule.expression or "", row))
        except Exception as exc:  # an expression failing on this row's values (a missing item, a type)
            raise RowFailed(f"filter rule {rule.name!r}: {type(exc).__name__}: {exc}") from None
    assert rule.column is not None
    values = texts(row.get(rule.column), rule.column)
    return all(_text_passes(rule, kind, text) for text in values)


def _text_passes(rule: FilterRule, kind: str, text: str) -> bool:
    if kind in ("contains_any", "contains_none"):
        words = getattr(rule, kind)
        haystack = text.lower() if rule.ignore_case else text
        found = any((w.lower() if rule.ignore_case else w) in haystack for w in words)
        return found if kind == "contains_any" else not found
    if kind in ("matches", "not_matches"):
        found = re.search(getattr(rule, kind), text) is not None
        return found if kind == "matches" else not found
    chars, words = len(text), len(text.split())
    return (
        (rule.min_chars is None or chars >= rule.min_chars)
        and (rule.max_chars is None or chars <= rule.max_chars)
        and (rule.min_words is None or words >= rule.min_words)
        and (rule.max_words is None or words <= rule.max_words)
    )


class Filter(SafeprefStep):
    """`filter`: rows failing a rule are filtered under its name; the others pass unchanged."""

    _parsed: list[FilterRule] | None = PrivateAttr(default=None)

    @classmethod
    def columns(cls, params: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        reads: list[str] = []
        for rule in FilterParams.model_validate(params).rules:
            reads += [rule.column] if rule.column else sorted(expression_columns(rule.expression or ""))
        return tuple(dict.fromkeys(reads)), ()

    def process_row(self, row: dict[str, Any]) -> None:
        for rule in self._rules():
            if not passes(rule, row):
                raise RowFiltered(rule.name)

    def _rules(self) -> list[FilterRule]:
        if self._parsed is None:
            self._parsed = FilterParams.model_validate(self.params).rules
        return self._parsed
