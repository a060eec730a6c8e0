"""Engine overhead: the same N prompts through `safepref run` and straight through the backend.

Both paths use the same backend, batch size and decoding, in one benchmark process (the engine's
generation runs in its distilabel worker). Prints the device, generated tokens/s of both and the ratio.

  --backend transformers (default): the bundled SmolLM2-135M-Instruct in process, on CUDA when torch
      sees a GPU, else CPU. Each side's time includes loading the model.
  --backend openai: an OpenAI-compatible server, e.g. `vllm serve MODEL` on a GPU machine
      (`--base-url http://127.0.0.1:8000/v1 --model MODEL`); without --base-url a local test server
      (tests/support/openai_server.py) serves the bundled model on 127.0.0.1, which measures the client side.

    OMP_NUM_THREADS=1 python bench/overhead.py [--prompts 96] [--max-new-tokens 64] [--batch-size 16]
    python bench/overhead.py --backend openai [--base-url URL --model NAME] [--concurrency 16]
Goal: engine >= 0.9x raw backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOPICS = [
    "a rude neighbour",
    "a noisy flatmate",
    "a late friend",
    "a messy coworker",
    "a pushy salesperson",
    "a sibling who borrows clothes",
    "a teammate who skips practice",
    "a loud dog next door",
]


def prompts(n: int) -> list[str]:
    return [f"How should I talk to {TOPICS[i % len(TOPICS)]}? (case {i})" for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", choices=["transformers", "openai"], default="transformers")
    parser.add_argument("--base-url", default=None, help="openai: the server (default: a local test server)")
    parser.add_argument("--model", default="bundled", help="openai: the served model name")
    parser.add_argument("--concurrency", type=int, default=16, help="openai: requests in flight")
    args = parser.parse_args()

    from factory.backends import ChatRequest, create_backend
    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe
    from schemas.generation import BackendSpec, GenerationParams

    generation = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": 0.0,
    }  # no repetition_penalty: transformers serve drops it
    server = None
    if args.backend == "openai":
        base_url = args.base_url
        if base_url is None:
            from factory.backends.transformers_backend import TransformersBackend
            from tests.support.openai_server import OpenAITestServer

            served = TransformersBackend(BackendSpec(kind="transformers", model="bundled", batch_size=1))
            server = OpenAITestServer(served).start()
            base_url = server.url
        spec = BackendSpec(
            kind="openai",
            base_url=base_url,
            model=args.model,
            max_concurrency=args.concurrency,
            batch_size=args.batch_size,
            generation=generation,
        )
        device = f"OpenAI-compatible server at {base_url} (model {args.model})"
    else:
        spec = BackendSpec(
            kind="transformers", model="bundled", batch_size=args.batch_size, generation=generation
        )
        device = _device()
    texts = prompts(args.prompts)

    def raw_run() -> tuple[int, float]:
        t0 = time.perf_counter()
        backend = create_backend(spec)
        params = GenerationParams(**generation)
        out = backend.generate(
            [ChatRequest(messages=[{"role": "user", "content": p}], params=params) for p in texts]
        )
        wall = time.perf_counter() - t0
        backend.close()
        return sum(c.completion_tokens for c in out), wall

    def engine_run() -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "prompts.jsonl"
            src.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in texts))
            recipe = {
                "name": "overhead",
                "license": "apache-2.0",
                "source": {"kind": "file", "path": str(src)},
                "backends": {"local": spec.model_dump(mode="json")},
                "stages": [
                    {
                        "name": "respond",
                        "step": "generate.respond",
                        "backend": "local",
                        "batch_size": len(texts),
                    }
                ],
                "outputs": [{"config": "responses", "exporter": "generate.responses"}],
                "card": {"pretty_name": "overhead bench"},
            }
            path = Path(tmp) / "recipe.yaml"
            path.write_text(yaml.safe_dump(recipe))
            t1 = time.perf_counter()
            result = run_recipe(load_recipe(str(path)), Path(tmp) / "out")
            return result.manifest.completion_tokens, time.perf_counter() - t1

    # alternate the two paths so warm-up and machine load fall on both alike; report the best of each
    raws, engines = [], []
    for _ in range(args.repeats):
        raws.append(raw_run())
        engines.append(engine_run())
    raw_tokens, raw_wall = min(raws, key=lambda r: r[1])
    engine_tokens, engine_wall = min(engines, key=lambda r: r[1])
    raw_tps, engine_tps = raw_tokens / raw_wall, engine_tokens / engine_wall
    if server is not None:
        server.stop()
    print(
        f"best of {args.repeats} alternating runs each; prompts {args.prompts}, max_new_tokens {args.max_new_tokens},"
        f" batch {args.batch_size}, backend {args.backend}; {device}"
    )
    print(
        f"raw backend   {raw_tokens:6d} tokens in {raw_wall:6.1f} s (backend start included)  {raw_tps:6.1f} tok/s"
    )
    print(
        f"engine        {engine_tokens:6d} tokens in {engine_wall:6.1f} s (pipeline, backend start, writer)  {engine_tps:6.1f} tok/s"
    )
    print(f"ratio engine/raw  {engine_tps / raw_tps:.2f}x   (goal >= 0.9x)")


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"bundled SmolLM2-135M in process on CUDA ({torch.cuda.get_device_name(0)})"
    return f"bundled SmolLM2-135M in process on CPU ({torch.get_num_threads()} torch threads)"


if __name__ == "__main__":
    main()
