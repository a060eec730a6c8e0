"""`safepref eval …` sub-commands (parsing only; the work lives in factory.evaluation)."""

from __future__ import annotations

import typer

eval_app = typer.Typer(
    help="Measure models: C²-Eval course-correction (c2) and harmlessness (harm).", no_args_is_help=True
)
