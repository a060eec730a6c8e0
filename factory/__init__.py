"""safepref engine: recipes, steps, LLM backends, execution, writer, publisher, CLI.

The public API, for notebooks and scripts (imported on first use, so `import factory` stays light):

    from factory import load_recipe, plan_recipe, run_recipe, check_folder, publish_folder
    from factory import train, run_c2_eval, run_harm_eval, C2Settings, HarmSettings
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("safepref")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

# public name -> module that defines it
_API = {
    "load_recipe": "factory.api",
    "run_recipe": "factory.api",
    "plan_recipe": "factory.api",
    "check_folder": "factory.api",
    "publish_folder": "factory.dataset.publish",
    "train": "trainers.run",
    "run_c2_eval": "factory.evaluation.c2_eval",
    "C2Settings": "factory.evaluation.c2_eval",
    "run_harm_eval": "factory.evaluation.harm_eval",
    "HarmSettings": "factory.evaluation.harm_eval",
    "UserError": "factory.core.errors",
}
__all__ = [*_API, "__version__"]

if TYPE_CHECKING:  # the same names for type checkers (`x as x` marks a re-export)
    from factory.api import check_folder as check_folder
    from factory.api import load_recipe as load_recipe
    from factory.api import plan_recipe as plan_recipe
    from factory.api import run_recipe as run_recipe
    from factory.core.errors import UserError as UserError
    from factory.dataset.publish import publish_folder as publish_folder
    from factory.evaluation.c2_eval import C2Settings as C2Settings
    from factory.evaluation.c2_eval import run_c2_eval as run_c2_eval
    from factory.evaluation.harm_eval import HarmSettings as HarmSettings
    from factory.evaluation.harm_eval import run_harm_eval as run_harm_eval
    from trainers.run import train as train


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'factory' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
