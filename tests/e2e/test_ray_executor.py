"""The same recipe on a local Ray (distilabel's RayPipeline) writes exactly what the local executor writes,
and saves distilabel's resume cache once, at the end, as the local executor does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.unit.factory.engine.test_engine import canned_recipe

pytestmark = pytest.mark.slow


def test_ray_executor_output_equals_local_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    import ray
    from distilabel.pipeline.batch_manager import _BatchManager

    saves: list[str] = []  # distilabel's batch manager cache, written by the driver (this process)
    save = _BatchManager.cache

    def counted(self: _BatchManager, *args: Any, **kwargs: Any) -> None:
        saves.append(str(kwargs.get("path") or args[0]))
        save(self, *args, **kwargs)

    monkeypatch.setattr(_BatchManager, "cache", counted)
    recipe = str(canned_recipe(tmp_path, fail_ids=["4"]))
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    a = run_recipe(load_recipe(recipe), local, allow_import_steps=True)
    assert len(saves) == 1
    try:
        b = run_recipe(load_recipe(recipe), on_ray, allow_import_steps=True, executor="ray")
    finally:
        ray.shutdown()
    assert len(saves) == 2  # once at the end of each run, not after every batch
    for out in (local, on_ray):  # no JSON copy of every step's every batch either
        assert len(list((out / ".work" / "distilabel").rglob("batch_manager.json"))) == 1
        assert not [
            f for d in (out / ".work" / "distilabel").rglob("steps_data") for f in d.rglob("*") if f.is_file()
        ]
    assert a.manifest.counts == b.manifest.counts
    for config in ("pairs", "pairs_conversational", "groups", "quarantine", "filtered"):
        files_a = sorted((local / config).glob("*.parquet"))
        files_b = sorted((on_ray / config).glob("*.parquet"))
        assert [f.name for f in files_a] == [f.name for f in files_b]
        assert [f.read_bytes() for f in files_a] == [f.read_bytes() for f in files_b], config
