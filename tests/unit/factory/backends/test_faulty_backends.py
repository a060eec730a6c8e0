"""A whole run against an OpenAI-compatible server on 127.0.0.1 that injects every fault kind.

Transient faults are retried and the rows come out; permanent ones end in quarantine with the raw
server body and the reason; the run completes and the counts add up. The verdict does not depend on
the machine's speed: the client's timeout is far above any generation here, and the stuck request is
released by an event (another request finishing), not by a clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from factory.dataset.folder_check import check_folder
from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.conftest import REPO
from tests.support.openai_server import OpenAITestServer

pytestmark = pytest.mark.slow
PROMPTS = [
    json.loads(line)["prompt"] for line in (REPO / "recipes/data/c2syn_demo.jsonl").read_text().splitlines()
]


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    from factory.backends.transformers_backend import TransformersBackend
    from schemas.generation import BackendSpec

    backend = TransformersBackend(BackendSpec(kind="transformers", model="bundled", batch_size=8))
    with OpenAITestServer(backend) as srv:
        yield srv
    backend.close()


def _recipe(server: OpenAITestServer) -> list[str]:
    return [
        "backends.local.kind=openai",
        f"backends.local.base_url={server.url}",
        "backends.local.model=bundled",
        "backends.local.max_retries=2",
        "backends.local.timeout_s=600",
        "backends.local.max_concurrency=4",
        "backends.local.generation.max_new_tokens=6",
        "stages.generate.batch_size=2",
    ]


def test_each_fault_kind_is_retried_or_quarantined_and_counts_add_up(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.reset()
    # permanent faults (more than the 1 + 2 retries of each of the row's 5 requests)
    server.inject("status", times=100, status=503, match=json.dumps(PROMPTS[1])[1:-1])
    server.inject("malformed", times=100, match=json.dumps(PROMPTS[2])[1:-1])
    server.inject("empty", times=100, match=json.dumps(PROMPTS[3])[1:-1])
    # transient faults: one each, then the retry succeeds
    server.inject("status", times=1, status=429, retry_after=0.1, match=json.dumps(PROMPTS[0])[1:-1])
    server.inject("stall", times=1, match=json.dumps(PROMPTS[4])[1:-1])
    server.inject("drop", times=1, match=json.dumps(PROMPTS[5])[1:-1])
    # a transient malformed body and a transient empty completion: retried, then fine
    server.inject("malformed", times=1, match=json.dumps(PROMPTS[0])[1:-1])
    server.inject("empty", times=1, match=json.dumps(PROMPTS[4])[1:-1])

    out = tmp_path / "out"
    result = run_recipe(load_recipe("c2syn-demo", _recipe(server), limit=6), out)

    counts = result.manifest.counts
    assert counts.input == 6 and counts.output == 3 and counts.quarantined == {"generate": 3}
    q = {r["_sp_id"]: r for r in pq.read_table(out / "quarantine" / "rows.parquet").to_pylist()}
    assert set(q) == {"1", "2", "3"}
    assert "503" in q["1"]["reason"] and q["1"]["raw_output"]
    assert q["2"]["raw_output"] and "generation failed" in q["2"]["reason"]
    assert "empty" in q["3"]["reason"]
    groups = pq.read_table(out / "groups").to_pylist()
    assert [g["source_id"] for g in groups] == ["0", "4", "5"]
    faults = [e.fault for e in server.log if e.fault]
    assert {"status", "malformed", "empty", "stall", "drop"} <= set(faults)
    assert check_folder(out).ok
