"""Built-in steps by the names recipes use. Implementations are imported only when a run needs them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from factory.errors import UserError
from factory.steps.ptalign_registry import PTALIGN_STEPS
from schemas.generic_params import GENERIC_STEPS

if TYPE_CHECKING:
    from distilabel.steps import Step

# step name -> "module:Class"
BUILTIN_STEPS: dict[str, str] = {
    "c2syn.select": "factory.steps.c2syn:C2Select",
    "c2syn.truncate": "factory.steps.c2syn:C2Truncate",
    "c2syn.generate": "factory.steps.c2syn:C2Generate",
    "c2syn.safety_check": "factory.steps.c2syn:C2SafetyCheck",
    "c2syn.rank": "factory.steps.c2syn:C2Rank",
    **PTALIGN_STEPS,
    **{name: target for name, (_, target) in GENERIC_STEPS.items()},
}


def resolve_step_class(step: str, *, allow_import: bool) -> type[Step]:
    """The step class for a built-in name, or for `module:Class` when the user allowed imports."""
    target = BUILTIN_STEPS.get(step)
    if target is None:
        if not allow_import:
            raise UserError(
                f"step {step!r} is an import path; pass --allow-import-steps to let the recipe import code"
            )
        target = step
    module_name, _, class_name = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import step {target!r}: {exc}") from None
    from factory.distilabel_compat import Step as StepBase

    if not (isinstance(found, type) and issubclass(found, StepBase)):
        raise UserError(f"step {target!r} is a {type(found).__name__}, not a distilabel Step class")
    return found
