"""Every declared step and exporter resolves to its implementation; the registries are derived."""

from __future__ import annotations

import inspect

import pytest

from factory.export.base import exporter_function
from factory.steps.registry import resolve_step_class
from schemas.methods import METHODS
from schemas.methods.base import ExporterDeclaration, MethodDeclaration, StepDeclaration
from schemas.records import RECORD_SCHEMAS
from schemas.registry import EXPORTERS, STEP_PARAMS, _unique
from schemas.step_params import StepParams


@pytest.mark.parametrize("name", sorted(STEP_PARAMS))
def test_every_declared_step_imports_as_a_distilabel_step(name: str) -> None:
    from distilabel.steps import Step

    cls = resolve_step_class(name, allow_import=False)
    assert issubclass(cls, Step)


@pytest.mark.parametrize("name", sorted(EXPORTERS))
def test_every_declared_exporter_is_a_function_of_row_and_context(name: str) -> None:
    fn = exporter_function(name)
    assert list(inspect.signature(fn).parameters) == ["row", "ctx"]
    assert EXPORTERS[name] in RECORD_SCHEMAS


def test_registries_hold_exactly_what_the_methods_declare() -> None:
    declared_steps = [n for m in METHODS for n in m.steps]
    assert sorted(declared_steps) == sorted(STEP_PARAMS)
    assert {m.name for m in METHODS} >= {"c2syn", "ptalign", "generic"}


def test_a_name_declared_by_two_methods_is_refused() -> None:
    class P(StepParams):
        pass

    a = MethodDeclaration("a", "A", None, steps={"x.y": StepDeclaration(P, "m:C")})
    b = MethodDeclaration("b", "B", None, steps={"x.y": StepDeclaration(P, "m:D")})
    with pytest.raises(RuntimeError, match="step declared twice: x.y"):
        _unique("step", [(n, m) for m in (a, b) for n in m.steps])
    ok = MethodDeclaration("c", "C", None, exporters={"c.z": ExporterDeclaration("c2_group", "m:f")})
    _unique("exporter", [(n, m) for m in (a, ok) for n in m.exporters])
