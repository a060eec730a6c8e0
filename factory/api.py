"""The library's front door: the same operations as the CLI, for notebooks and scripts.

Each function takes what a person would type (a recipe name or path, a folder) as well as the
objects the engine passes around, and returns the engine's result objects. User mistakes raise
`factory.core.errors.UserError` (its message names the file, field or row), as the CLI prints them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from factory.dataset.folder_check import CheckReport
    from factory.engine.plan import RecipePlan
    from factory.engine.recipe import LoadedRecipe
    from factory.engine.run import RunResult


def load_recipe(
    recipe: str | Path, overrides: list[str] | None = None, limit: int | None = None
) -> LoadedRecipe:
    """Read and validate a recipe: a YAML path or a built-in name (`c2syn-demo`, `ptalign`, ...).

    `overrides` are `key.path=value` strings as `--set` takes them; `limit` caps the source rows read.
    """
    from factory.engine.recipe import load_recipe as load

    return load(str(recipe), overrides, limit)


def _loaded(
    recipe: str | Path | LoadedRecipe, overrides: list[str] | None, limit: int | None
) -> LoadedRecipe:
    from factory.engine.recipe import LoadedRecipe

    if isinstance(recipe, LoadedRecipe):
        if overrides or limit is not None:
            raise ValueError("pass overrides and limit to load_recipe, not with an already loaded recipe")
        return recipe
    return load_recipe(recipe, overrides, limit)


def run_recipe(
    recipe: str | Path | LoadedRecipe,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    limit: int | None = None,
    allow_import_steps: bool = False,
    executor: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Run a recipe into the dataset folder `out` and return its manifest (`result.manifest`).

    Re-running the same recipe into the same folder reuses the finished run; after an interruption
    or an edit, every unchanged LLM request comes from the folder's request cache.
    Load the result with `datasets.load_dataset(str(out), CONFIG)`.
    """
    from factory.engine.run import run_recipe as run

    return run(
        _loaded(recipe, overrides, limit),
        Path(out),
        allow_import_steps=allow_import_steps,
        executor=executor,
        ray_address=ray_address,
    )


def plan_recipe(
    recipe: str | Path | LoadedRecipe, *, overrides: list[str] | None = None, limit: int | None = None
) -> RecipePlan:
    """Stages with the LLM calls and generated tokens the recipe needs at most, without running it."""
    from factory.engine.plan import plan_recipe as plan

    return plan(_loaded(recipe, overrides, limit))


def check_folder(folder: str | Path) -> CheckReport:
    """Re-validate every row of a dataset folder against its schema, and its files, counts and card
    against the manifest; `report.ok` and `report.problems` say the outcome."""
    from factory.dataset.folder_check import check_folder as check

    return check(Path(folder))
