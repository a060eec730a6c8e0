"""Engine overhead: the same N prompts through `safepref run` and straight through the backend.

Both paths use the transformers backend with the bundled SmolLM2-135M-Instruct, the same batch size
and decoding, in one benchmark process (the engine's generation runs in its distilabel worker).
Each side's time includes loading the model. Prints generated tokens/s of both and the ratio.

    OMP_NUM_THREADS=1 python bench/overhead.py [--prompts 96] [--max-new-tokens 64] [--batch-size 16]
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
    args = parser.parse_args()

    from factory.backends import ChatRequest, create_backend
    from factory.engine import run_recipe
    from factory.recipe_loader import load_recipe
    from schemas.generation import BackendSpec, GenerationParams

    generation = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0, "repetition_penalty": 1.2}
    spec = BackendSpec(
        kind="transformers", model="bundled", batch_size=args.batch_size, generation=generation
    )
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
    print(
        f"best of {args.repeats} alternating runs each; prompts {args.prompts}, max_new_tokens {args.max_new_tokens}, batch {args.batch_size}, bundled SmolLM2-135M, CPU"
    )
    print(
        f"raw backend   {raw_tokens:6d} tokens in {raw_wall:6.1f} s (model load included)  {raw_tps:6.1f} tok/s"
    )
    print(
        f"engine        {engine_tokens:6d} tokens in {engine_wall:6.1f} s (pipeline, model load, writer)  {engine_tps:6.1f} tok/s"
    )
    print(f"ratio engine/raw  {engine_tps / raw_tps:.2f}x   (goal >= 0.9x)")


if __name__ == "__main__":
    main()
