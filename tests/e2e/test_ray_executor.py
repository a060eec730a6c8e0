"""The same recipe on a local Ray (distilabel's RayPipeline) writes exactly what the local executor writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.unit.factory.engine.test_engine import canned_recipe

pytestmark = pytest.mark.slow


def test_ray_executor_output_equals_local_executor(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import ray

    recipe = str(canned_recipe(tmp_path, fail_ids=["4"]))
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    a = run_recipe(load_recipe(recipe), local, allow_import_steps=True)
    try:
        b = run_recipe(load_recipe(recipe), on_ray, allow_import_steps=True, executor="ray")
    finally:
        ray.shutdown()
    assert a.manifest.counts == b.manifest.counts
    for config in ("pairs", "pairs_conversational", "groups", "quarantine", "filtered"):
        files_a = sorted((local / config).glob("*.parquet"))
        files_b = sorted((on_ray / config).glob("*.parquet"))
        assert [f.name for f in files_a] == [f.name for f in files_b]
        assert [f.read_bytes() for f in files_a] == [f.read_bytes() for f in files_b], config
