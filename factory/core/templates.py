"""Prompt templates: Jinja2 files rendered in a sandbox (recipes are data, not code)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from factory.core.errors import UserError


def builtin_templates_dir() -> Path:
    return Path(str(files("recipes") / "templates"))


@lru_cache(maxsize=8)
def _env(search_dir: str) -> ImmutableSandboxedEnvironment:
    from jinja2 import FileSystemLoader

    return ImmutableSandboxedEnvironment(
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
def _variables(env: ImmutableSandboxedEnvironment, source: str) -> frozenset[str]:
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(env.parse(source)) - set(env.globals))


def template_sha256(name: str, search_dir: str | None = None) -> str:
    env = _env(search_dir or str(builtin_templates_dir()))
    try:
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    except TemplateNotFound:
        raise UserError(f"prompt template {name!r} not found", where=search_dir) from None
    return hashlib.sha256(source.encode()).hexdigest()
