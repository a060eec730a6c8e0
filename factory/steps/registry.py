"""A recipe's step name -> its class: declared by a method (`schemas/methods/`), or an import path the
user allowed. Implementations are imported only when a run needs them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from factory.core.errors import UserError
from schemas.registry import STEP_IMPLEMENTATIONS

if TYPE_CHECKING:
    from distilabel.steps import Step


def resolve_step_class(step: str, *, allow_import: bool) -> type[Step]:
    """The step class for a built-in name, or for `module:Class` when the user allowed imports."""
    target = STEP_IMPLEMENTATIONS.get(step)
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
    from factory.core.distilabel_compat import Step as StepBase

    if not (isinstance(found, type) and issubclass(found, StepBase)):
        raise UserError(f"step {target!r} is a {type(found).__name__}, not a distilabel Step class")
    return found
