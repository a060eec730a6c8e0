"""Load a recipe (path or built-in name), apply `--set` overrides, validate, hash."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from factory.errors import UserError
from factory.limits import BoundedLoader, load_yaml
from schemas.recipe import Recipe


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    path: Path
    hash: str

    @property
    def base_dir(self) -> Path:
        """Relative paths in the recipe (sources, templates) resolve against the recipe's folder."""
        return self.path.parent


def builtin_recipes_dir() -> Path:
    return Path(str(files("recipes")))


def builtin_recipe_names() -> list[str]:
    return sorted(p.stem for p in builtin_recipes_dir().glob("*.yaml"))


def resolve_recipe_path(ref: str) -> Path:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError("recipe file not found", where=str(path))
        return path
    builtin = builtin_recipes_dir() / f"{ref}.yaml"
    if builtin.is_file():
        return builtin
    known = ", ".join(builtin_recipe_names())
    raise UserError(f"no recipe file or built-in recipe named {ref!r} (built-ins: {known})")


def read_yaml(path: Path) -> Any:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), where=str(path)) from None
    return load_yaml(content, where=str(path))


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """`a.b.c=value`; value parsed as YAML; list items addressed by index or by their `name`."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set expects key.path=value, got {assignment!r}")
    try:
        value = yaml.load(raw, Loader=BoundedLoader) if raw else ""  # a SafeLoader with bounds
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, key)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UserError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping or list")


def _list_index(node: list[Any], part: str, key: str) -> int:
    if part.isdigit() and int(part) < len(node):
        return int(part)
    for idx, item in enumerate(node):
        if isinstance(item, dict) and item.get("name", item.get("config")) == part:
            return idx
    raise UserError(f"--set {key}: no list item named or numbered {part!r}")


def format_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    nested = re.match(r"^(params(?:\.[\w.]+)?): (.*)$", msg, re.S)
    if nested:  # a step-params error raised inside the stage validator: keep the full path
        loc, msg = f"{loc}.{nested.group(1)}", nested.group(2)
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{more}"


def _with_stage_names(loc_msg: str, data: dict[str, Any]) -> str:
    """Turn `stages.2.params.x: msg` into `stages[generate].params.x: msg` (and `outputs.0` into
    `outputs[pairs]`) so the user sees the stage or config name."""
    loc, sep, msg = loc_msg.partition(": ")
    parts = loc.split(".")
    key = {"stages": "name", "outputs": "config"}.get(parts[0])
    if len(parts) > 1 and key and parts[1].isdigit():
        items = data.get(parts[0]) or []
        idx = int(parts[1])
        if idx < len(items) and isinstance(items[idx], dict) and key in items[idx]:
            rest = "".join(f".{p}" for p in parts[2:])
            return f"{parts[0]}[{items[idx][key]}]{rest}{sep}{msg}"
    return loc_msg


def load_recipe(ref: str, overrides: list[str] | None = None, limit: int | None = None) -> LoadedRecipe:
    path = resolve_recipe_path(ref)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a recipe must be a YAML mapping", where=str(path))
    for assignment in overrides or []:
        apply_override(data, assignment)
    if limit is not None:
        data.setdefault("source", {})
        if isinstance(data["source"], dict):
            data["source"]["limit"] = limit
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise UserError(_with_stage_names(format_validation_error(exc), data), where=str(path)) from None
    return LoadedRecipe(recipe=recipe, path=path.resolve(), hash=recipe_hash(recipe))


def recipe_hash(recipe: Recipe) -> str:
    canonical = json.dumps(recipe.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
