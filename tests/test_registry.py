"""Every registered step and exporter has both halves: pure params/schema and an implementation."""

from __future__ import annotations

from factory.export.c2syn import EXPORTER_FUNCTIONS
from factory.steps.registry import BUILTIN_STEPS, resolve_step_class
from schemas.registry import RECORD_SCHEMAS
from schemas.step_params import EXPORTERS, STEP_PARAMS


def test_every_step_has_params_and_an_importable_implementation() -> None:
    assert set(BUILTIN_STEPS) == set(STEP_PARAMS)
    for name in BUILTIN_STEPS:
        assert resolve_step_class(name, allow_import=False).__name__


def test_every_exporter_has_a_known_schema_and_a_function() -> None:
    assert set(EXPORTER_FUNCTIONS) == set(EXPORTERS)
    assert set(EXPORTERS.values()) <= set(RECORD_SCHEMAS)
