"""How much of its concurrency cap a client keeps busy against a server that answers like a busy vLLM.

A stand-in OpenAI-compatible server on loopback (`bench/paced_server.py`, in a process of its own as
a real server is: about 2 s a request, lengths varying) answers the c2syn recipe run through safepref's engine with its shipped
batch sizes, at each cap, and then exactly the same requests sent by a plain client (a thread pool of
httpx clients) at the same cap. Printed: the share of the cap kept busy from the first request to the
last answer, measured by the server, for both, and the limit of the job: the same requests, each as
long as the server held it, sent by a client that loses no time at all (a finite job drains its last
window, and with 5,000 requests of ~2 s that costs ~3.5% at 256 in flight and ~1% at 64).

    OMP_NUM_THREADS=1 python bench/serving.py [--rows 1000] [--caps 256 64] [--timeline 1]
Goal: >= 0.94 at 256 and >= 0.983 at 64 in flight, with 5,000 requests as the peers were measured
(issue 15). `--timeline S` prints the mean requests in flight in each S seconds, for both clients.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.c2syn_scale import synthetic_rows  # noqa: E402
from bench.paced_server import PacedServer, PacedServerProcess  # noqa: E402


def run_engine(server: PacedServer | PacedServerProcess, cap: int, source: Path, work: Path) -> float:
    """The shipped c2syn recipe (its batch sizes) against the server at `cap`; returns seconds."""
    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe

    recipe = yaml.safe_load((REPO / "recipes" / "c2syn.yaml").read_text())
    recipe["source"] = {"kind": "file", "path": str(source)}
    recipe["backends"]["vllm"].update(base_url=server.url, max_concurrency=cap)
    recipe["outputs"] = [o for o in recipe["outputs"] if o["config"] == "pairs"]
    path = work / f"c2syn-{cap}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    started = time.perf_counter()
    run_recipe(load_recipe(str(path)), work / f"out-{cap}")
    return time.perf_counter() - started


def run_plain(
    server: PacedServer | PacedServerProcess, cap: int, bodies: list[tuple[str, dict[str, Any]]]
) -> float:
    """The same requests from `cap` threads, each with its own httpx client made beforehand (so the
    first requests do not wait for clients being built); returns seconds."""
    import httpx

    pending = iter(bodies)
    lock = threading.Lock()

    def work(client: httpx.Client) -> None:
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            path, body = item
            client.post(server.url + path.removeprefix("/v1"), json=body).raise_for_status()

    clients = [httpx.Client(timeout=120) for _ in range(cap)]
    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in clients:
        c.close()
    return elapsed


def limit_share(durations: list[float], cap: int) -> float:
    """The share a client that loses no time reaches: each request starts the instant a slot frees."""
    free_at = [0.0] * cap
    for d in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + d)
    return sum(durations) / (cap * max(free_at))


def timeline(profile: list[float], cap: int, step_s: float) -> str:
    return "\n".join(
        f"{k * step_s:7.1f} s {busy:6.1f} {'#' * round(50 * busy / cap)}" for k, busy in enumerate(profile)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000, help="source rows; 5 requests each")
    parser.add_argument("--caps", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--seconds-per-request", type=float, default=2.0)
    parser.add_argument("--timeline", type=float, metavar="S", help="print requests in flight per S seconds")
    args = parser.parse_args()

    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        PacedServerProcess(seconds_per_request=args.seconds_per_request) as server,
    ):
        work = Path(tmp)
        source = work / "rows.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(args.rows)))
        for cap in args.caps:
            server.reset()
            engine_s = run_engine(server, cap, source, work)
            engine_share, bodies = server.busy_share(cap), list(server.bodies)
            limit = limit_share(server.durations(), cap)
            if args.timeline:
                print(
                    f"safepref, {cap} in flight\n{timeline(server.in_flight_profile(args.timeline), cap, args.timeline)}"
                )
            server.reset()
            plain_s = run_plain(server, cap, bodies)
            if args.timeline:
                print(
                    f"plain client, {cap} in flight\n{timeline(server.in_flight_profile(args.timeline), cap, args.timeline)}"
                )
            results.append((cap, len(bodies), engine_share, engine_s, server.busy_share(cap), plain_s, limit))
    print(
        f"stand-in server: ~{args.seconds_per_request:g} s a request, lengths varying; c2syn recipe, shipped batch sizes"
    )
    print(
        f"{'in flight':>9}  {'requests':>8}  {'safepref':>8}  {'plain client':>12}  {'ratio':>6}  {'limit':>6}"
    )
    for cap, n, engine_share, engine_s, plain_share, plain_s, limit in results:
        print(
            f"{cap:>9}  {n:>8,}  {engine_share:>8.3f}  {plain_share:>12.3f}  {engine_share / plain_share:>6.3f}"
            f"  {limit:>6.3f}   (run {engine_s:.0f} s with the engine's start-up and writing; plain {plain_s:.0f} s)"
        )
    print(
        "share of the cap kept busy from the first request to the last answer, measured by the server;"
        " limit: the same requests from a client that loses no time"
    )


if __name__ == "__main__":
    main()
