"""Training-step benchmarks, same model and batches in one process; prints the ratios.

1. PT-ALIGN step (MLE + token-level UT, the trainer's own `compute_loss`) vs a plain MLE step over the
   same tokens (`model(input_ids, labels=...)`). Goal: <= 1.1x.
2. Group-aware DPO vs per-pair DPO (TRL's `DPOTrainer`) over one epoch of C²-Syn groups (15 pairs from
   6 responses each). Goals: >= 3x fewer forward tokens, >= 2x faster per epoch.

    OMP_NUM_THREADS=1 python bench/train_step.py                 # tiny Llama, CPU
    python bench/train_step.py --model bundled --groups 8        # SmolLM2-135M (GPU if available)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _model_dir(kind: str, tmp: Path) -> Path:
    if kind == "bundled":
        from factory.core.models import bundled_model_dir

        return bundled_model_dir()
    from tests.support.trainer_fixtures import tiny_llama

    return tiny_llama(tmp / "tiny", hidden=128, layers=4)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Any, repeats: int, device: Any) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_ptalign(model_dir: Path, out: Path, repeats: int, batch: int, dtype: Any, device: Any) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from tests.support.trainer_fixtures import safety_triple
    from trainers.algorithms.ptalign import PTAlignSettings, triple_rows
    from trainers.algorithms.ptalign.trainer import PTAlignTrainer, encode_rows

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    settings = PTAlignSettings(selection="diff")
    encoded = encode_rows(triple_rows([safety_triple(i) for i in range(batch)]), model, tokenizer, settings)
    args = TrainingArguments(output_dir=str(out / "pt"), report_to="none", use_cpu=device.type == "cpu")
    trainer = PTAlignTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(encoded),
        processing_class=tokenizer,
        settings=settings,
    )
    batch_t = {k: v.to(device) for k, v in trainer.data_collator(encoded).items()}
    # MLE over the same tokens: every token that carries a PT-ALIGN loss term.
    mle_labels = batch_t["input_ids"].masked_fill((batch_t["mle_mask"] + batch_t["ut_mask"]) == 0, -100)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    model.train()

    def ptalign_step() -> None:
        loss = trainer.compute_loss(model, batch_t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def mle_step() -> None:
        loss = model(
            input_ids=batch_t["input_ids"], attention_mask=batch_t["attention_mask"], labels=mle_labels
        ).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_pt, t_mle = _timed(ptalign_step, repeats, device), _timed(mle_step, repeats, device)
    ratio = t_pt / t_mle
    print(
        f"ptalign step {t_pt * 1e3:.1f} ms | plain MLE step {t_mle * 1e3:.1f} ms | ratio {ratio:.2f}x (goal <= 1.1x)"
    )
    return ratio


def bench_group_dpo(model_dir: Path, out: Path, groups: int, dtype: Any, device: Any) -> tuple[float, float]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tests.support.trainer_fixtures import c2_group
    from trainers.algorithms.dpo import group_rows, preference_rows
    from trainers.algorithms.group_dpo import GroupDPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = [c2_group(i) for i in range(groups)]

    def run(trainer_cls: Any, rows: list[dict[str, Any]], batch: int, name: str) -> tuple[float, int]:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        args = DPOConfig(
            output_dir=str(out / name),
            per_device_train_batch_size=batch,
            max_length=None,
            bf16=False,
            gradient_checkpointing=False,
            report_to="none",
            use_cpu=device.type == "cpu",
        )
        trainer = trainer_cls(
            model=model,
            ref_model=ref,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        data = trainer.train_dataset
        batches = [
            {
                k: v.to(device)
                for k, v in trainer.data_collator(
                    [data[j] for j in range(i, min(i + batch, len(data)))]
                ).items()
            }
            for i in range(0, len(data), batch)
        ]
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
        model.train()

        def epoch() -> None:
            for b in batches:
                trainer.compute_loss(model, b).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

        # Policy and reference each run one forward over the batch's tokens.
        tokens = 2 * sum(int(b["attention_mask"].sum()) for b in batches)
        return _timed(epoch, 2, device), tokens

    t_pair, tok_pair = run(DPOTrainer, preference_rows(records), 15, "pair")
    t_group, tok_group = run(GroupDPOTrainer, group_rows(records), 1, "group")
    token_ratio, speedup = tok_pair / tok_group, t_pair / t_group
    print(
        f"per-pair DPO epoch {t_pair:.2f} s, {tok_pair} forward tokens | group DPO epoch {t_group:.2f} s, "
        f"{tok_group} forward tokens | {token_ratio:.2f}x fewer tokens (goal >= 3x), {speedup:.2f}x faster (goal >= 2x)"
    )
    return token_ratio, speedup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "bundled"], default="tiny")
    parser.add_argument("--groups", type=int, default=4, help="C²-Syn groups in the DPO epoch")
    parser.add_argument("--batch", type=int, default=4, help="triples per PT-ALIGN batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    opts = parser.parse_args()

    import torch

    device = torch.device(
        "cuda" if opts.device == "auto" and torch.cuda.is_available() else opts.device.replace("auto", "cpu")
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _model_dir(opts.model, Path(tmp))
        print(f"model {opts.model} ({model_dir}), device {device}, dtype {dtype}")
        bench_ptalign(model_dir, Path(tmp), opts.repeats, opts.batch, dtype, device)
        bench_group_dpo(model_dir, Path(tmp), opts.groups, dtype, device)


if __name__ == "__main__":
    main()
