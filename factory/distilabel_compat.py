"""Import distilabel without the rich traceback hook it installs (that hook prints locals, tokens included)."""

import os
import signal
import sys
import warnings
from typing import Any

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")
_hook = sys.excepthook
with warnings.catch_warnings():
    # distilabel 1.5.3's models trigger pydantic 2.14 UnsupportedFieldAttributeWarning at import
    warnings.simplefilter("ignore")
    from distilabel.pipeline import Pipeline as _DistilabelPipeline
    from distilabel.steps import GeneratorStep, LoadDataFromDicts, Step, StepInput

sys.excepthook = _hook


class Pipeline(_DistilabelPipeline):
    """distilabel's local pipeline, minus its SIGINT handler: distilabel's waits for in-flight batches
    on the first Ctrl-C and needs a third one to stop, and it waited for ever on a hung worker.
    The run's own handler (factory.processes) stays in place instead."""

    def _handle_keyboard_interrupt(self) -> Any:
        return signal.getsignal(signal.SIGINT)


__all__ = ["GeneratorStep", "LoadDataFromDicts", "Pipeline", "Step", "StepInput"]
