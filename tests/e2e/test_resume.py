"""Resume and reuse: SIGKILL mid-run (the model server dies with the run) then re-run gives the rows
the request cache determines and generates again only the requests that were unanswered; unchanged
requests are never generated twice, even after a recipe edit (the manifest counts the calls answered
from the request cache)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.engine.recipe import load_recipe
from factory.engine.run import RunResult, run_recipe
from tests.conftest import REPO
from tests.e2e.test_managed_server import alive, children, cmdline

pytestmark = pytest.mark.slow


def _model_copy(tmp_path: Path) -> Path:
    from factory.core.models import bundled_model_dir

    model = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), model)
    return model


def _stored(cache: Path) -> int:
    """Answers in the request cache (0 while the run has not created it)."""
    if not cache.exists():
        return 0
    with contextlib.closing(sqlite3.connect(cache, timeout=60)) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


def _groups(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "groups").glob("*.parquet"))}


def _overrides(model: Path) -> list[str]:
    return [
        f"backends.local.model={model}",
        "backends.local.generation.max_new_tokens=6",
        "backends.local.batch_size=4",
        "stages.generate.batch_size=1",
    ]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, RunResult]:
    """One finished run (model copy, folder, result) that each edit test copies and runs its edit into."""
    tmp = tmp_path_factory.mktemp("first-run")
    model = _model_copy(tmp)
    out = tmp / "out"
    return model, out, run_recipe(load_recipe("c2syn-demo", _overrides(model), limit=3), out)


def test_recipe_edit_before_generation_reuses_every_unchanged_request(
    first_run: tuple[Path, Path, RunResult], tmp_path: Path
) -> None:
    model, finished, first = first_run
    out = shutil.copytree(finished, tmp_path / "out")  # the run's folder with its .work (request cache)
    assert first.manifest.stages["generate"].cached_calls == 0
    # select's threshold changes its signature (distilabel recomputes every later step), but the same
    # rows pass, so every generate request is answered from DIR/.work/requests.sqlite
    edited = run_recipe(
        load_recipe("c2syn-demo", [*_overrides(model), "stages.select.params.min_words=79"], limit=3), out
    )
    assert edited.manifest.counts == first.manifest.counts
    assert edited.manifest.recipe_hash != first.manifest.recipe_hash
    generate = edited.manifest.stages["generate"]
    assert _groups(out) and generate.llm_calls == generate.cached_calls == 15  # none generated again


def test_edit_of_a_stage_after_generation_reuses_generation(
    first_run: tuple[Path, Path, RunResult], tmp_path: Path
) -> None:
    model, finished, first = first_run
    out = shutil.copytree(finished, tmp_path / "out")
    # a new stage after `generate` (the SR safety check) and a changed `rank` stage: nothing is regenerated
    later = [*_overrides(model), "stages.rank.batch_size=7"]
    edited = load_recipe("c2syn-demo", later, limit=3)
    check = {"name": "check", "step": "c2syn.safety_check", "params": {"judge": "keyword", "action": "drop"}}
    recipe = edited.recipe.model_copy(deep=True)
    from schemas.recipe import StageSpec

    recipe.stages.insert(3, StageSpec.model_validate(check))
    from factory.engine.recipe import LoadedRecipe, recipe_hash

    result = run_recipe(LoadedRecipe(recipe, edited.path, recipe_hash(recipe)), out)
    generate = result.manifest.stages["generate"]
    assert generate.llm_calls == generate.cached_calls == first.manifest.stages["generate"].llm_calls
    assert result.manifest.counts.output + result.manifest.counts.filtered.get("unsafe_safe_response", 0) == 3


def test_sigkill_mid_run_then_rerun_equals_a_run_through_the_cache(tmp_path: Path) -> None:
    """Greedy decoding under continuous batching is not bitwise stable across batch compositions, so
    the reference is a run answered by the request cache: the rows are exactly what the cached
    generations determine, and the killed run generated again only what it had not finished."""
    model = _model_copy(tmp_path)
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "factory", "run", "c2syn-demo", "--limit", "6", "--out", str(out)]
    for o in _overrides(model):
        args += ["--set", o]
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    cache = out / ".work" / "requests.sqlite"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill once some answers are stored, before the end
            if _stored(cache) >= 5:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no generation was stored in time")
        servers = [p for p in children(proc.pid) if "transformers.cli.transformers serve" in cmdline(p)]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "manifest.json").exists()
    stored = _stored(cache)  # each answer is stored as it arrives, whatever the batch
    assert 5 <= stored < 30
    [server] = servers  # in its own process group: only its parent's death (PR_SET_PDEATHSIG) ends it
    gone_by = time.time() + 60  # the kernel ends it at once; the bound only turns a bug into a failure
    while alive(server):
        assert time.time() < gone_by, "the model server outlived its SIGKILLed run"
        time.sleep(0.05)

    resumed = run_recipe(load_recipe("c2syn-demo", _overrides(model), limit=6), out)
    assert resumed.manifest.counts.output == 6
    generate = resumed.manifest.stages["generate"]
    assert generate.llm_calls == 30 and generate.cached_calls == stored
    assert generate.llm_calls - generate.cached_calls == 30 - stored  # only what was unfinished

    reference = tmp_path / "reference"
    (reference / ".work").mkdir(parents=True)
    for store in (out / ".work").glob("requests.sqlite*"):  # the database and its write-ahead log
        shutil.copy(store, reference / ".work" / store.name)
    replay = run_recipe(load_recipe("c2syn-demo", _overrides(model), limit=6), reference)
    assert replay.manifest.stages["generate"].cached_calls == 30
    assert _groups(out) == _groups(reference)
    for config in ("pairs", "pairs_conversational"):
        assert sorted(p.read_bytes() for p in (out / config).glob("*.parquet")) == sorted(
            p.read_bytes() for p in (reference / config).glob("*.parquet")
        )
