"""How the CLI prints to a terminal, a log file or a pipe (rich)."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.measure import Measurement

_UNBOUNDED = 100_000


def print_unclipped(console: Console, renderable: RenderableType) -> None:
    """Print a table whole. Without a terminal (a log, a pipe) rich assumes 80 columns and would cut or
    squeeze a wider table; there it gets the width it needs. A terminal keeps its own width."""
    if not console.is_terminal:
        needed = Measurement.get(console, console.options.update_width(_UNBOUNDED), renderable).maximum
        if needed > console.width:
            console = Console(file=console.file, width=needed, no_color=True, highlight=False)
    console.print(renderable)
