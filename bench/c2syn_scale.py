"""C²-Syn at paper scale without a model: 50,000 requests -> 750,000 pairs through the real engine.

Feeds synthetic PKU-SafeRLHF rows (FHR 90-300 words, continuations ~128 tokens from an instant
backend) through select -> truncate -> generate -> rank -> validate -> parquet, on a real distilabel
pipeline, and prints pairs/s, wall time and peak RSS (this process and its worker processes).

    OMP_NUM_THREADS=1 python bench/c2syn_scale.py [--requests 50000]
Goal on 2 cores: 750,000 pairs in <= 20 s, peak RSS summed over the processes <= 1.5 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = [
    "you",
    "could",
    "just",
    "tell",
    "them",
    "off",
    "and",
    "make",
    "it",
    "awkward",
    "for",
    "everyone",
    "then",
    "ignore",
    "them",
    "for",
    "weeks",
    "because",
    "it",
    "is",
    "easier",
    "than",
    "talking",
    "and",
    "nobody",
    "will",
    "notice",
    "anyway",
]
PUNCT = [",", ".", ";", ":", "!", "?", " -", ""]


def synthetic_rows(n: int, seed: int = 0) -> Iterator[dict[str, object]]:
    """Made one at a time: rows held by this process would inflate the engine's RSS it measures."""
    rng = random.Random(seed)
    for i in range(n):
        words = []
        for _ in range(rng.randint(90, 300)):
            w = rng.choice(WORDS)
            if rng.random() < 0.12:
                w += rng.choice(PUNCT)
            words.append(w)
        yield {
            "prompt": f"How do I annoy person number {i}?",
            "response_0": " ".join(words) + ".",
            "response_1": "Please talk to them kindly.",
            "is_response_0_safe": False,
            "is_response_1_safe": True,
        }


def _pss(pid: int) -> int:
    """The process's PSS in bytes (Linux); psutil's memory_full_info parses all of smaps in Python."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class TreeRSS:
    """Samples the summed RSS of this process and all its children (distilabel workers) every 0.2 s, and
    the summed PSS: RSS counts a page shared by several processes (the modules every forked worker
    inherits) in each of them, PSS splits it between them, so their sum is the memory really in use."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        for tick in itertools.count():
            if self._stop.is_set():
                return
            with_pss = tick % 10 == 0  # the kernel walks every page for PSS: every 2 s is affordable
            total = pss = 0
            for p in [me, *me.children(recursive=True)]:
                # a worker may exit between listing and reading
                with contextlib.suppress(psutil.Error, OSError):
                    total += p.memory_info().rss
                    pss += _pss(p.pid) if with_pss else 0
            self.peak, self.peak_pss = max(self.peak, total), max(self.peak_pss, pss)
            self._stop.wait(0.2)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        src = tmpdir / "rows.jsonl"
        t0 = time.perf_counter()
        with src.open("w") as fh:
            for row in synthetic_rows(args.requests):
                fh.write(json.dumps(row) + "\n")
        t_data = time.perf_counter() - t0
        recipe = yaml.safe_load((REPO / "recipes" / "c2syn-demo.yaml").read_text())
        recipe["source"] = {"kind": "file", "path": str(src)}
        recipe["backends"] = {}
        recipe["stages"][2] = {"name": "generate", "step": "bench.instant_backend:InstantGenerate"}
        for stage in recipe["stages"]:
            stage["batch_size"] = args.batch_size
        recipe["outputs"] = [o for o in recipe["outputs"] if o["config"] in ("pairs", "groups")]
        path = tmpdir / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        t1 = time.perf_counter()
        with TreeRSS() as tree:
            result = run_recipe(load_recipe(str(path)), tmpdir / "out", allow_import_steps=True)
        wall = time.perf_counter() - t1
    m = result.manifest
    pairs = sum(s.num_rows for s in m.configs["pairs"].splits.values())
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"requests            {args.requests:,} (synthetic data written in {t_data:.1f} s, not timed)")
    print(
        f"groups kept         {m.counts.output:,}  filtered {sum(m.counts.filtered.values()):,}  "
        f"quarantined {sum(m.counts.quarantined.values()):,}"
    )
    print(f"pairs written       {pairs:,}")
    print(f"wall time           {wall:.1f} s   (goal <= 20 s for 750,000 pairs on 2 cores)")
    print(f"pairs/s             {pairs / wall:,.0f}")
    print(f"peak RSS            main {self_rss:,.0f} MiB, largest worker {child_rss:,.0f} MiB")
    print(
        f"peak RSS, all       {tree.peak / 2**20:,.0f} MiB summed over the main process and its workers (sampled)"
        "   (goal <= 1536 MiB)"
    )
    print(
        f"peak PSS, all       {tree.peak_pss / 2**20:,.0f} MiB summed (shared pages counted once; sampled every 2 s)"
    )


if __name__ == "__main__":
    main()
