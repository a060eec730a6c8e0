"""Import distilabel without the rich traceback hook it installs (that hook prints locals, tokens included)."""

import os
import sys

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")
_hook = sys.excepthook
from distilabel.steps import GeneratorStep, Step, StepInput  # noqa: E402

sys.excepthook = _hook

__all__ = ["GeneratorStep", "Step", "StepInput"]
