"""Every registry, derived from the method declarations (`schemas/methods/`): nothing here is listed by
hand, so a step, exporter or seed-file schema exists once its method declares it."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.methods import METHODS
from schemas.methods.base import MethodDeclaration
from schemas.records import HARMFUL_TEXT_SCHEMAS, RECORD_SCHEMAS, SCHEMAS_WITHOUT_HARMFUL_TEXT
from schemas.step_params import ExporterParams, StepParams


def _unique(kind: str, pairs: list[tuple[str, object]]) -> None:
    seen: dict[str, int] = {}
    for name, _ in pairs:
        seen[name] = seen.get(name, 0) + 1
    twice = sorted(n for n, count in seen.items() if count > 1)
    if twice:  # a bug in a declaration, caught at import
        raise RuntimeError(f"{kind} declared twice: {', '.join(twice)}")


_unique("step", [(n, m) for m in METHODS for n in m.steps])
_unique("exporter", [(n, m) for m in METHODS for n in m.exporters])
_unique("seed-file schema", [(n, m) for m in METHODS for n in m.seed_files])

# step name -> params model / "module:Class"
STEP_PARAMS: dict[str, type[StepParams]] = {n: d.params for m in METHODS for n, d in m.steps.items()}
STEP_IMPLEMENTATIONS: dict[str, str] = {n: d.implementation for m in METHODS for n, d in m.steps.items()}
# exporter name -> record schema name / "module:function"
EXPORTERS: dict[str, str] = {n: d.record for m in METHODS for n, d in m.exporters.items()}
EXPORTER_IMPLEMENTATIONS: dict[str, str] = {
    n: d.implementation for m in METHODS for n, d in m.exporters.items()
}
# exporter name -> the model of its `params` (exporters not listed take none)
EXPORTER_PARAMS: dict[str, type[ExporterParams]] = {
    n: d.params for m in METHODS for n, d in m.exporters.items() if d.params is not None
}
SEED_FILE_SCHEMAS: dict[str, type[BaseModel]] = {n: s for m in METHODS for n, s in m.seed_files.items()}
# exporter name -> the method that declares it (the card names the paper a dataset follows)
METHOD_OF_EXPORTER: dict[str, MethodDeclaration] = {n: m for m in METHODS for n in m.exporters}

_unknown = sorted({r for r in EXPORTERS.values() if r not in RECORD_SCHEMAS})
if _unknown:
    raise RuntimeError(f"exporters name unknown record schemas: {', '.join(_unknown)}")


def params_models() -> dict[str, type[StepParams] | type[ExporterParams]]:
    """`step:NAME` / `exporter:NAME` -> its params model (for `safepref schema`)."""
    steps = {f"step:{name}": model for name, model in STEP_PARAMS.items()}
    return {**steps, **{f"exporter:{name}": model for name, model in EXPORTER_PARAMS.items()}}


__all__ = [
    "EXPORTERS",
    "EXPORTER_IMPLEMENTATIONS",
    "EXPORTER_PARAMS",
    "HARMFUL_TEXT_SCHEMAS",
    "METHODS",
    "METHOD_OF_EXPORTER",
    "RECORD_SCHEMAS",
    "SCHEMAS_WITHOUT_HARMFUL_TEXT",
    "SEED_FILE_SCHEMAS",
    "STEP_IMPLEMENTATIONS",
    "STEP_PARAMS",
]
