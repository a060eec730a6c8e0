"""`filter`: keep the rows that meet every rule (keywords, regex, length bounds, a sandboxed expression).

The first rule a row fails filters it under the rule's name (the manifest counts rows per rule). An
expression is Jinja2's expression language evaluated in jinja2's immutable sandbox over the row's
columns: no Python `eval`, no attribute access to internals, no mutation. It must not allocate
without limit either, so beyond `*` and `**` (bounded) it may only call what cannot build text or
lists much longer than its inputs: the read-only methods of text (`lower`, `split`, `startswith`,
...), of lists and mappings, the globals below and the filters in EXPRESSION_FILTERS. Padding and
formatting (`ljust`, `center`, `zfill`, `format`, `"%9d" % x`), `replace`, `join`, `batch` and the
like are refused (a SecurityError quarantines the row; an unknown filter is a recipe error). A value
a rule cannot read (a number where text is expected, an expression that fails on the row)
quarantines the row with the reason.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, meta
from jinja2.exceptions import SecurityError, TemplateAssertionError
from pydantic import PrivateAttr

from factory.core.rows import own_columns
from factory.core.templates import BoundedSandbox
from factory.steps.base import RowFailed, RowFiltered, SafeprefStep
from schemas.generic_params import FilterParams, FilterRule


def _number_sum(values: Any, start: Any = 0) -> Any:
    """`sum` of numbers only: `sum(lists, [])` would concatenate without bound."""
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise SecurityError("sum() starts from a number in a filter expression")
    return sum(values, start)


# what an expression may call besides the row's columns and the filters below
EXPRESSION_GLOBALS: dict[str, Any] = {
    "len": len, "min": min, "max": max, "abs": abs, "sum": _number_sum, "round": round, "any": any,
    "all": all,
}  # fmt: skip
# Jinja2's filters that build nothing much longer than their input (`responses | length`); the
# others (center, indent, format, join, replace, wordwrap, batch, slice, ...) can be told to allocate
# without limit, or are of no use to decide a row (random, urlize, tojson, ...)
EXPRESSION_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int", "items", "last",
    "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "reverse", "round", "select",
    "selectattr", "sort", "string", "title", "trim", "unique", "upper", "wordcount",
)  # fmt: skip
# methods an expression may call: reading text, lists and mappings (never padding, formatting,
# replacing or joining, which take a size or a text to repeat)
EXPRESSION_METHODS = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha", "isascii",
        "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace",
        "istitle", "isupper", "lower", "lstrip", "partition", "removeprefix", "removesuffix", "rfind",
        "rindex", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
        "swapcase", "title", "upper", "get", "items", "keys", "values",
    }
)  # fmt: skip


class ExpressionSandbox(BoundedSandbox):
    """The templates' bounded sandbox (`*`, `**`) with `%` formatting of text refused too and only
    the methods in EXPRESSION_METHODS callable."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # any other method (str.ljust, str.format, int.to_bytes, ...) reads as an unsafe attribute:
        # calling it raises SecurityError
        return attr in EXPRESSION_METHODS and super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is not offered (`"{:>999999999}".format(1)`): is_safe_attribute refuses it

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):  # "%0999999999d" % 1 pads to a gigabyte
            raise SecurityError("`%` formatting of text is not available in a filter expression")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def sandbox() -> ExpressionSandbox:
    env = ExpressionSandbox(undefined=StrictUndefined)
    env.globals.clear()  # jinja2's default globals (range, dict, lipsum, cycler, ...) are not needed
    env.globals.update(EXPRESSION_GLOBALS)
    filters = {name: env.filters[name] for name in EXPRESSION_FILTERS}
    env.filters.clear()
    env.filters.update(filters, sum=_number_sum)
    return env


@lru_cache(maxsize=256)
def compiled(expression: str) -> Any:
    return sandbox().compile_expression(expression, undefined_to_none=False)


def expression_columns(expression: str) -> set[str]:
    """The names an expression reads that are not its globals: the row columns it needs. ValueError
    when it names a filter the sandbox does not offer."""
    env = sandbox()
    try:
        compiled(expression)
    except TemplateAssertionError as exc:  # "No filter named 'center'."
        offered = ", ".join(sorted(env.filters))
        raise ValueError(f"expression {expression!r}: {exc.message} (filters offered: {offered})") from None
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
    ignore_case = rule.ignore_case is not False  # keyword and regex rules: true unless set false
    if kind in ("contains_any", "contains_none"):
        words = getattr(rule, kind)
        haystack = text.lower() if ignore_case else text
        found = any((w.lower() if ignore_case else w) in haystack for w in words)
        return found if kind == "contains_any" else not found
    if kind in ("matches", "not_matches"):
        found = re.search(getattr(rule, kind), text, re.IGNORECASE if ignore_case else 0) is not None
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
    def columns(
        cls, params: dict[str, Any], template_dir: str | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
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
