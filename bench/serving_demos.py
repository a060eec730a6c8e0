"""The demos on their managed model server: peak memory of the whole run and generated tokens/s end to end,
against the in-process transformers backend's raw tokens/s on the same requests.

For each demo, `safepref run DEMO` runs in a subprocess; the resident memory of it and every process
below it (distilabel workers, the model server) is summed every 0.1 s and the peak kept. End to end =
the run's generated tokens (manifest) / its wall time, server start and pipeline included. Then the
run's requests, read back from its request cache, go straight through the in-process backend
(`TransformersBackend.generate`, batch 16, as many CPU threads as the run's server had; model load
excluded), in this process: raw tokens/s.

Where the run's time went is printed too, from its progress events: when the first request was sent,
from then to the last answer (generation), the requests in flight on average over that span, and the
load average of the machine while each part ran (the figures are only comparable on an idle machine),
and the tokens per CPU second of the run's processes and of the in-process backend (a figure that
other processes on the machine disturb less).
For reference, the same requests are also sent all at once to a server of their own (same settings,
start-up excluded): what the server does when no stage waits for another's answers.

    OMP_NUM_THREADS=1 python bench/serving_demos.py [--demo c2syn-demo] [--demo ptalign-demo] [--limit N]

Goals: ptalign-demo peak summed RSS <= 3 GiB; end to end >= 1.5x the raw in-process tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TICK_S = 0.5  # factory.core.progress.TICK_S: a waiting stage reports its requests in flight this often


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


@dataclass
class Sampler:
    """Load average (1 min) samples with their times, taken in a thread while something runs."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), os.getloadavg()[0]))
            self._stop.wait(1.0)

    def mean(self, start: float = 0.0, end: float = float("inf")) -> float:
        within = [load for t, load in self.samples if start <= t <= end] or [x for _, x in self.samples]
        return sum(within) / len(within) if within else float("nan")


@dataclass
class DemoRun:
    manifest: dict
    started: float  # time.time() of the subprocess start
    wall: float
    cpu: float  # CPU seconds of all its processes
    peak_rss: int
    server_ready_s: float | None
    threads: int


def run_demo(demo: str, out: Path, limit: int | None) -> DemoRun:
    """One `safepref run`: its manifest, wall time and peak summed RSS."""
    from factory.backends.managed_server import server_threads
    from factory.engine.recipe import load_recipe

    args = [sys.executable, "-m", "factory", "run", demo, "--out", str(out)]
    if limit:
        args += ["--limit", str(limit)]
    recipe = load_recipe(demo, None, limit).recipe
    served = [spec for spec in recipe.backends.values() if spec.kind == "transformers"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    console = out.parent / "console.txt"
    cpu_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    started_at, started = time.time(), time.perf_counter()
    with console.open("w") as stdout:
        run = subprocess.Popen(args, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT)
        peak = 0
        while run.poll() is None:
            peak = max(peak, tree_rss(run.pid))
            time.sleep(0.1)
    wall = time.perf_counter() - started
    text = console.read_text(errors="replace")
    if run.returncode != 0:
        raise SystemExit(f"{demo} failed ({run.returncode}): {text[-2000:]}")
    ready = re.search(r"ready in ([\d.]+) s", text)
    return DemoRun(
        manifest=json.loads((out / "manifest.json").read_text()),
        started=started_at,
        wall=wall,
        # every process of the run was reaped by its parent, so its CPU time adds up here
        cpu=cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before,
        peak_rss=peak,
        server_ready_s=float(ready.group(1)) if ready else None,
        threads=server_threads(served[0]) if served else 0,
    )


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def generation_span(out: Path) -> tuple[float, float, float]:
    """(first request sent, last answer, mean requests in flight between them) from the progress events."""
    events = [json.loads(line) for line in (out / ".work" / "progress.jsonl").read_text().splitlines()]
    requests = [e for e in events if "requests" in e]
    busy = [e for e in requests if e.get("in_flight") or e["requests"]]
    if not busy:
        return float("nan"), float("nan"), float("nan")
    first, last = busy[0]["t"] - TICK_S, max(e["t"] for e in requests if e["requests"])
    in_flight = sum(e.get("in_flight") or 0 for e in requests) * TICK_S / max(last - first, TICK_S)
    return first, last, in_flight


def served_alone_tokens_per_s(out: Path, demo: str, limit: int | None) -> tuple[int, float, float, int]:
    """(tokens, seconds, the server's CPU seconds, max in flight) of the run's requests sent all at once to a server of its own with
    the run's backend settings (start-up excluded): what the server does when no stage waits for another."""
    from factory.backends.managed_server import ManagedServer, client_spec
    from factory.backends.openai_backend import OpenAIBackend
    from factory.backends.request_cache import RequestCache
    from factory.engine.recipe import load_recipe

    cache = RequestCache(out / ".work" / "requests.sqlite")
    requests = cache.requests()
    cache.close()
    spec = next(
        s for s in load_recipe(demo, None, limit).recipe.backends.values() if s.kind == "transformers"
    )
    with (
        tempfile.TemporaryDirectory() as logs,
        ManagedServer("alone", spec, Path(logs) / "server.log") as server,
    ):
        server.wait_ready()
        assert server.pid is not None
        client = OpenAIBackend(client_spec(spec, server.url))
        cpu_before, started = process_cpu_seconds(server.pid), time.perf_counter()
        completions = client.generate(requests)
        seconds, cpu = time.perf_counter() - started, process_cpu_seconds(server.pid) - cpu_before
        client.close()
    return sum(c.completion_tokens for c in completions), seconds, cpu, spec.max_concurrency


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_tokens_per_s(out: Path, batch_size: int, threads: int) -> tuple[int, float, float]:
    """(tokens, seconds, CPU seconds) of the run's requests straight through the in-process backend."""
    from factory.backends.request_cache import RequestCache
    from factory.backends.transformers_backend import TransformersBackend
    from schemas.generation import BackendSpec

    cache = RequestCache(out / ".work" / "requests.sqlite")
    requests = cache.requests()
    cache.close()
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # TransformersBackend sets torch's threads from it
    backend = TransformersBackend(BackendSpec(kind="transformers", model="bundled", batch_size=batch_size))
    if previous is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = previous
    cpu_before, started = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    completions = backend.generate(requests)
    seconds, cpu = time.perf_counter() - started, cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    backend.close()
    return sum(c.completion_tokens for c in completions), seconds, cpu


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
            with Sampler() as load:
                run = run_demo(demo, out, args.limit)
                first, last, in_flight = generation_span(out)
                alone_started = time.time()
                alone_tokens, alone_s, alone_cpu, cap = served_alone_tokens_per_s(out, demo, args.limit)
                raw_started = time.time()
                raw_tokens, raw_s, raw_cpu = raw_tokens_per_s(out, args.raw_batch_size, run.threads)
        tokens = run.manifest["completion_tokens"]
        served_tps, raw_tps = tokens / run.wall, raw_tokens / raw_s
        end = run.started + run.wall
        ready = f"{run.server_ready_s:.1f} s" if run.server_ready_s is not None else "-"
        print(f"{demo}: peak summed RSS of the run's process tree {run.peak_rss / 2**30:.2f} GiB")
        print(f"  served end to end  {tokens:6d} tokens in {run.wall:6.1f} s  {served_tps:6.1f} tok/s")
        print(
            f"    server ready after {ready}, first request at {first - run.started:.1f} s, generating"
            f" {last - first:.1f} s with {in_flight:.1f} requests in flight on average, then"
            f" {end - last:.1f} s to exit; {run.threads} server thread(s)"
        )
        print(
            f"    load average: {load.mean(run.started, first):.1f} while starting,"
            f" {load.mean(first, last):.1f} while generating"
        )
        print(
            f"  in-process raw     {raw_tokens:6d} tokens in {raw_s:6.1f} s  {raw_tps:6.1f} tok/s"
            f"  (batch {args.raw_batch_size}, same requests, {run.threads} thread(s);"
            f" load average {load.mean(raw_started):.1f})"
        )
        print(f"  ratio served/raw   {served_tps / raw_tps:.2f}x   (goal >= 1.5x)")
        print(
            f"  per CPU second (less sensitive to other load): served {tokens / run.cpu:.1f} tok"
            f" ({run.cpu:.0f} CPU s, all its processes), raw {raw_tokens / raw_cpu:.1f} tok"
            f" ({raw_cpu:.0f} CPU s): {tokens / run.cpu / (raw_tokens / raw_cpu):.2f}x"
        )
        print(
            f"  for reference, its server alone: the same requests all at once (up to {cap} in flight),"
            f" {alone_tokens} tokens in {alone_s:.1f} s, {alone_tokens / alone_s:.1f} tok/s"
            f" = {alone_tokens / alone_s / raw_tps:.2f}x raw (load average {load.mean(alone_started, raw_started):.1f});"
            f" {alone_tokens / alone_cpu:.1f} tok per CPU second = {alone_tokens / alone_cpu / (raw_tokens / raw_cpu):.2f}x raw"
        )


if __name__ == "__main__":
    main()
