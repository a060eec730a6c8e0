"""Import distilabel without the rich traceback hook it installs (that hook prints locals, tokens included)."""

import os
import sys
import warnings

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")
_hook = sys.excepthook
with warnings.catch_warnings():
    # distilabel 1.5.3's models trigger pydantic 2.14 UnsupportedFieldAttributeWarning at import
    warnings.simplefilter("ignore")
    from distilabel.pipeline import Pipeline
    from distilabel.steps import GeneratorStep, LoadDataFromDicts, Step, StepInput

sys.excepthook = _hook

__all__ = ["GeneratorStep", "LoadDataFromDicts", "Pipeline", "Step", "StepInput"]
