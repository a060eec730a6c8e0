"""The demos on their managed model server: peak memory of the whole run and generated tokens/s end to end,
against the in-process transformers backend's raw tokens/s on the same requests.

For each demo, `safepref run DEMO` runs in a subprocess; the resident memory of it and every process
below it (distilabel workers, the model server) is summed every 0.1 s and the peak kept. End to end =
the run's generated tokens (manifest) / its wall time, server start and pipeline included. Then the
run's requests, read back from its request cache, go straight through the in-process backend
(`TransformersBackend.generate`, batch 16 as the demos had; model load excluded): raw tokens/s.

    OMP_NUM_THREADS=1 python bench/serving_demos.py [--demo c2syn-demo] [--demo ptalign-demo] [--limit N]

Goals: ptalign-demo peak summed RSS <= 3 GiB; end to end >= 1.5x the raw in-process tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def tree_rss(root: int) -> int:
    """Summed resident memory (bytes) of `root` and all its descendants."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    total = 0
    for pid in tree:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def run_demo(demo: str, out: Path, limit: int | None) -> tuple[dict, float, int]:
    """(manifest, wall seconds, peak summed RSS bytes) of one `safepref run`."""
    args = [sys.executable, "-m", "factory", "run", demo, "--out", str(out)]
    if limit:
        args += ["--limit", str(limit)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    run = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while run.poll() is None:
        peak = max(peak, tree_rss(run.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - started
    assert run.stderr is not None
    if run.returncode != 0:
        raise SystemExit(f"{demo} failed ({run.returncode}): {run.stderr.read()[-2000:]}")
    return json.loads((out / "manifest.json").read_text()), wall, peak


def raw_tokens_per_s(out: Path, batch_size: int) -> tuple[int, float]:
    """(tokens, seconds) of the run's requests straight through the in-process backend."""
    from factory.backends.request_cache import RequestCache
    from factory.backends.transformers_backend import TransformersBackend
    from schemas.generation import BackendSpec

    cache = RequestCache(out / ".work" / "requests.sqlite")
    requests = cache.requests()
    cache.close()
    backend = TransformersBackend(BackendSpec(kind="transformers", model="bundled", batch_size=batch_size))
    started = time.perf_counter()
    completions = backend.generate(requests)
    seconds = time.perf_counter() - started
    backend.close()
    return sum(c.completion_tokens for c in completions), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", action="append", help="c2syn-demo and ptalign-demo by default")
    parser.add_argument("--limit", type=int, default=None, help="source rows per demo (default: all)")
    parser.add_argument("--raw-batch-size", type=int, default=16)
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}; bundled SmolLM2-135M-Instruct")
    for demo in args.demo or ["c2syn-demo", "ptalign-demo"]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            manifest, wall, peak = run_demo(demo, out, args.limit)
            tokens = manifest["completion_tokens"]
            raw_tokens, raw_s = raw_tokens_per_s(out, args.raw_batch_size)
        served_tps, raw_tps = tokens / wall, raw_tokens / raw_s
        print(f"{demo}: peak summed RSS of the run's process tree {peak / 2**30:.2f} GiB")
        print(f"  served end to end  {tokens:6d} tokens in {wall:6.1f} s  {served_tps:6.1f} tok/s")
        print(
            f"  in-process raw     {raw_tokens:6d} tokens in {raw_s:6.1f} s  {raw_tps:6.1f} tok/s"
            f"  (batch {args.raw_batch_size}, same requests)"
        )
        print(f"  ratio served/raw   {served_tps / raw_tps:.2f}x   (goal >= 1.5x)")


if __name__ == "__main__":
    main()
