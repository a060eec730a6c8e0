"""Prompt templates: Jinja2 files rendered in a sandbox (recipes are data, not code)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from factory.core.errors import UserError

MAX_SEQUENCE = 1_000_000  # longest string or list `*` may build
MAX_EXPONENT = 64
MAX_POWER_BITS = 4096  # largest integer `**` may build


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with `*` and `**` bounded: jinja2 folds constant expressions when it
    compiles a template, so `{{ "a" * 10**10 }}` would be built while a recipe is validated; an
    intercepted operator is neither folded nor run unbounded (a SecurityError instead)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float):
            if abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is above {MAX_EXPONENT}")
            if isinstance(left, int) and left.bit_length() * abs(right) > MAX_POWER_BITS:
                raise SecurityError(f"`**` would build an integer of more than {MAX_POWER_BITS} bits")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_SEQUENCE
                ):
                    raise SecurityError(f"`*` would build a sequence longer than {MAX_SEQUENCE:,}")
        return super().call_binop(context, operator, left, right)


def builtin_templates_dir() -> Path:
    return Path(str(files("recipes") / "templates"))


@lru_cache(maxsize=8)
def _env(search_dir: str) -> BoundedSandbox:
    from jinja2 import FileSystemLoader

    return BoundedSandbox(
        loader=FileSystemLoader([search_dir, str(builtin_templates_dir())]),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render_template(name: str, search_dir: str | None = None, /, **context: Any) -> str:
    """Render template `name` (looked up in `search_dir`, then the built-in templates). Both are
    positional-only, so a variable may have any name (a source column called `name` included)."""
    template = compile_template(name, search_dir)
    try:
        return template.render(**context).strip()
    except UndefinedError as exc:
        raise UserError(str(exc), where=f"template {name}") from None
    except SecurityError as exc:  # the template's own doing, whatever the row: the run stops
        raise UserError(f"refused by the sandbox: {exc}", where=f"template {name}") from None


def compile_template(name: str, search_dir: str | None = None) -> Template:
    """The parsed template; a missing file or a syntax error is a UserError (before any row is read)."""
    env = _env(search_dir or str(builtin_templates_dir()))
    try:
        return env.get_template(name)
    except TemplateNotFound:
        raise UserError(f"prompt template {name!r} not found", where=search_dir) from None
    except TemplateSyntaxError as exc:
        raise UserError(f"line {exc.lineno}: {exc.message}", where=f"template {name}") from None


def template_variables(name: str, search_dir: str | None = None) -> frozenset[str]:
    """The variables template `name` reads from its context (not those it sets itself): a step
    declares them as columns it reads, so `validate` finds a misspelled one and intake quarantines a
    row whose value is missing. Variables of included templates are not counted. The file is read
    each time (a template edited between two runs of one process counts as edited)."""
    env = _env(search_dir or str(builtin_templates_dir()))
    try:
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        return _variables(env, source)
    except TemplateNotFound:
        raise UserError(f"prompt template {name!r} not found", where=search_dir) from None
    except TemplateSyntaxError as exc:
        raise UserError(f"line {exc.lineno}: {exc.message}", where=f"template {name}") from None


@lru_cache(maxsize=64)
def _variables(env: BoundedSandbox, source: str) -> frozenset[str]:
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(env.parse(source)) - set(env.globals))


def template_sha256(name: str, search_dir: str | None = None) -> str:
    env = _env(search_dir or str(builtin_templates_dir()))
    try:
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    except TemplateNotFound:
        raise UserError(f"prompt template {name!r} not found", where=search_dir) from None
    return hashlib.sha256(source.encode()).hexdigest()
