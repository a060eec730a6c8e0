"""Tokens/s of the transformers backend on the bundled model (greedy, 64 new tokens).

OMP_NUM_THREADS=2 python bench/backend_speed.py [--dtype float32] [--device cpu] [--batches 1 8]
"""

from __future__ import annotations

import argparse
import time

from factory.backends import ChatRequest, create_backend
from schemas.generation import BackendSpec, GenerationParams

TOPICS = ["the sea", "a quiet library", "autumn leaves", "a friendly robot", "mountain trails", "city rain",
          "an old clock", "a garden in spring"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for batch in args.batches:
        spec = BackendSpec(kind="transformers", batch_size=batch, dtype=args.dtype, device=args.device)
        backend = create_backend(spec)
        params = GenerationParams(max_new_tokens=args.new_tokens, repetition_penalty=1.2)
        requests = [
            ChatRequest(
                [{"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]}."}], params
            )
            for i in range(batch)
        ]
        backend.generate(requests[:1])  # warm-up
        best = 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            completions = backend.generate(requests)
            elapsed = time.perf_counter() - start
            tokens = sum(c.completion_tokens for c in completions)
            best = max(best, tokens / elapsed)
        print(
            f"batch {batch:>3}  dtype {args.dtype:<8}  device {getattr(backend, 'device', '?')}  "
            f"{tokens} new tokens  {best:7.1f} tok/s (best of {args.repeats})"
        )
        backend.close()


if __name__ == "__main__":
    main()
