"""The bench scripts still run and measure what they say (tiny sizes; figures are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def bench(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, f"bench/{script}", *args], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_scale_bench_writes_15_pairs_per_kept_group_and_quarantines_nothing() -> None:
    out = bench("c2syn_scale.py", "--requests", "300", "--batch-size", "100")
    kept = int(re.search(r"groups kept\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    pairs = int(re.search(r"pairs written\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert kept > 250 and pairs == 15 * kept
    assert re.search(r"quarantined 0\b", out)


def test_overhead_bench_runs_both_paths_on_the_same_tokens() -> None:
    out = bench("overhead.py", "--prompts", "2", "--max-new-tokens", "4", "--repeats", "1")
    raw = re.search(r"raw backend\s+(\d+) tokens", out)
    engine = re.search(r"engine\s+(\d+) tokens", out)
    assert raw and engine and raw.group(1) == engine.group(1) == "8"
    assert "ratio engine/raw" in out and re.search(r"in process on (CPU|CUDA)", out)


def test_serving_bench_measures_the_engine_and_a_plain_client_on_the_same_requests() -> None:
    out = bench(
        "serving.py", "--rows", "12", "--caps", "8", "--seconds-per-request", "0.05", "--timeline", "0.05"
    )
    row = re.search(r"^\s+8\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out, re.MULTILINE)
    assert row, out
    requests, engine, plain = int(row.group(1).replace(",", "")), float(row.group(2)), float(row.group(3))
    assert requests % 5 == 0 and requests > 8  # 5 per kept row, more than the cap
    assert 0 < engine <= 1 and 0 < plain <= 1 and 0 < float(row.group(5)) <= 1
    assert "safepref, 8 in flight" in out and "plain client, 8 in flight" in out  # the timelines


def test_the_limit_of_a_job_is_its_requests_sent_the_instant_a_slot_frees() -> None:
    from bench.serving import limit_share

    assert limit_share([2.0, 1.0, 1.0], cap=2) == 1.0  # two slots busy for 2 s
    assert limit_share([1.0, 1.0, 1.0], cap=2) == 0.75  # the last request runs alone


def test_serving_demos_bench_measures_the_served_run_and_the_raw_backend_on_the_same_requests() -> None:
    out = bench("serving_demos.py", "--demo", "c2syn-demo", "--limit", "1")  # row 0 passes select: 5 requests
    served = re.search(r"served end to end\s+(\d+) tokens", out)
    raw = re.search(r"in-process raw\s+(\d+) tokens", out)
    assert served and raw and int(served.group(1)) > 0 and int(raw.group(1)) > 0, out
    assert re.search(r"peak summed RSS of the run's process tree [\d.]+ GiB", out)
    assert re.search(r"ratio served/raw\s+[\d.]+x", out) and "server alone" in out
    assert re.search(r"generating [\d.]+ s with [\d.]+ requests in flight", out)
