"""Shared fixtures. Tests run offline: no Hub, no network beyond 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.support.hub_env"]  # the `hub` and `datasets_client` fixtures

# The demo runs below keep each built-in recipe's stages, rows, samples and rounds (what their tests count)
# but cut the answers the tests never read whole: token-bound on a CPU, these demos' stages wait on
# decoding (ptalign-demo 60 s -> 42 s, safe-completion-demo 40 s -> 30 s on an idle 2-core machine).
# PT-ALIGN's list stages keep their 48 tokens, room for the 2 topics / instructions they expand into.
PTALIGN_DEMO_OVERRIDES = [
    "backends.local.generation.max_new_tokens=24",
    "stages.topics.params.generation.max_new_tokens=48",
    "stages.instructions.params.generation.max_new_tokens=48",
    "stages.refine.params.generation.max_new_tokens=16",  # critiques and revisions
]
SAFE_COMPLETION_DEMO_OVERRIDES = ["backends.policy.generation.max_new_tokens=16"]


@pytest.fixture(scope="session")
def c2syn_demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `c2syn-demo` run with the bundled SmolLM2 model, shared by the tests that read it."""
    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe

    out = tmp_path_factory.mktemp("c2syn-demo") / "out"
    run_recipe(load_recipe("c2syn-demo"), out)
    return out


@pytest.fixture(scope="session")
def ptalign_demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `ptalign-demo` run with the bundled SmolLM2 model (shorter answers:
    PTALIGN_DEMO_OVERRIDES), shared by the tests that read it."""
    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe

    out = tmp_path_factory.mktemp("ptalign-demo") / "out"
    run_recipe(load_recipe("ptalign-demo", PTALIGN_DEMO_OVERRIDES), out)
    return out


@pytest.fixture(scope="session")
def safe_completion_demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `safe-completion-demo` run (bundled SmolLM2 as policy and judge; shorter answers:
    SAFE_COMPLETION_DEMO_OVERRIDES), shared by its tests."""
    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe

    out = tmp_path_factory.mktemp("safe-completion-demo") / "out"
    run_recipe(load_recipe("safe-completion-demo", SAFE_COMPLETION_DEMO_OVERRIDES), out)
    return out
