"""How much of its concurrency cap a client keeps busy against a server that answers like a busy vLLM.

One process: a stand-in OpenAI-compatible server on loopback (`bench/paced_server.py`: about 2 s a
request, lengths varying) answers the c2syn recipe run through safepref's engine with its shipped
batch sizes, at each cap, and then exactly the same requests sent by a plain client (a thread pool of
httpx clients) at the same cap. Printed: the share of the cap kept busy from the first request to the
last answer, measured by the server, for both.

    OMP_NUM_THREADS=1 python bench/serving.py [--rows 600] [--caps 256 64]
Goal: >= 0.94 at 256 and >= 0.983 at 64 in flight (a finite job drains its last window: ~0.94 at
256 is the limit of this job; the plain client shows it).
"""

from __future__ import annotations

import argparse
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
from bench.paced_server import PacedServer  # noqa: E402


def run_engine(server: PacedServer, cap: int, source: Path, work: Path) -> float:
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


def run_plain(server: PacedServer, cap: int, bodies: list[tuple[str, dict[str, Any]]]) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=600, help="source rows; 5 requests each")
    parser.add_argument("--caps", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--seconds-per-request", type=float, default=2.0)
    args = parser.parse_args()

    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        PacedServer(seconds_per_request=args.seconds_per_request) as server,
    ):
        work = Path(tmp)
        source = work / "rows.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(args.rows)))
        for cap in args.caps:
            server.reset()
            engine_s = run_engine(server, cap, source, work)
            engine_share, bodies = server.busy_share(cap), list(server.bodies)
            server.reset()
            plain_s = run_plain(server, cap, bodies)
            results.append((cap, len(bodies), engine_share, engine_s, server.busy_share(cap), plain_s))
    print(
        f"stand-in server: ~{args.seconds_per_request:g} s a request, lengths varying; c2syn recipe, shipped batch sizes"
    )
    print(f"{'in flight':>9}  {'requests':>8}  {'safepref':>8}  {'plain client':>12}  {'ratio':>6}")
    for cap, n, engine_share, engine_s, plain_share, plain_s in results:
        print(
            f"{cap:>9}  {n:>8,}  {engine_share:>8.3f}  {plain_share:>12.3f}  {engine_share / plain_share:>6.3f}"
            f"   (run {engine_s:.0f} s with the engine's start-up and writing; plain {plain_s:.0f} s)"
        )
    print("share of the cap kept busy from the first request to the last answer, measured by the server")


if __name__ == "__main__":
    main()
