"""Load a recipe (path or built-in name), apply `--set` overrides, validate, hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factory.core.config_files import Location, apply_override, dotted, format_validation_error, read_yaml
from factory.core.errors import UserError
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


def _named(data: dict[str, Any]) -> Callable[[Location], str]:
    """Name a stage or an output by its name, not its index: `stages[generate].params.x`, not
    `stages.2.params.x`; `outputs[pairs]`, not `outputs.0`."""

    def location(loc: Location) -> str:
        key = {"stages": "name", "outputs": "config"}.get(str(loc[0])) if len(loc) > 1 else None
        items = data.get(str(loc[0])) if key else None
        if key and isinstance(items, list) and isinstance(loc[1], int) and loc[1] < len(items):
            item = items[loc[1]]
            if isinstance(item, dict) and key in item:
                return dotted((f"{loc[0]}[{item[key]}]", *loc[2:]))
        return dotted(loc)

    return location


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
        raise UserError(format_validation_error(exc, location=_named(data)), where=str(path)) from None
    return LoadedRecipe(recipe=recipe, path=path.resolve(), hash=recipe_hash(recipe))


def recipe_hash(recipe: Recipe) -> str:
    canonical = json.dumps(recipe.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
