"""Group-aware DPO gives per-pair DPO's loss and gradients (TRL's DPOTrainer on the same 15 pairs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from tests.support.trainer_fixtures import c2_group, tiny_llama  # noqa: E402
from trainers.algorithms.dpo import group_rows, preference_rows  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


def _models(tiny_dir: Path) -> tuple[Any, Any]:
    """A policy that differs from its reference (so log-ratios are not all zero), and the reference."""
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    ref = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return policy, ref


def _config(out: Path, loss_type: str, batch: int) -> Any:
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        loss_type=[loss_type],
        beta=0.1,
        max_length=None,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        use_cpu=True,
    )


def _loss_and_grads(trainer: Any) -> tuple[float, dict[str, Any], int]:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads, int(batch["input_ids"].numel())


# The default loss and the one that divides by completion lengths (the only loss-specific input the group
# path builds). Every loss type goes through the same code here but the formula, which
# test_losses.py::test_dpo_pair_losses_match_the_formulas pins for each (hinge included); a case costs
# ~15 s on CPU (float64 log-probs over the 49k-token vocabulary).
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_group_dpo_equals_per_pair_dpo(tiny_dir: Path, tmp_path: Path, loss_type: str) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    from trainers.algorithms.group_dpo import GroupDPOTrainer

    group = c2_group(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)

    policy, ref = _models(tiny_dir)
    pairs = Dataset.from_list(preference_rows([group]))
    assert len(pairs) == 15
    per_pair = DPOTrainer(
        model=policy,
        ref_model=ref,
        args=_config(tmp_path / "a", loss_type, 15),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    pair_loss, pair_grads, pair_tokens = _loss_and_grads(per_pair)

    policy, ref = _models(tiny_dir)
    groups = Dataset.from_list(group_rows([group]))
    grouped = GroupDPOTrainer(
        model=policy,
        ref_model=ref,
        args=_config(tmp_path / "b", loss_type, 1),
        train_dataset=groups,
        processing_class=tokenizer,
    )
    group_loss, group_grads, group_tokens = _loss_and_grads(grouped)

    assert pair_loss == pytest.approx(group_loss, abs=1e-5)
    assert pair_loss > 0
    assert pair_grads.keys() == group_grads.keys() and len(pair_grads) > 0
    for name, g in pair_grads.items():
        torch.testing.assert_close(group_grads[name], g, atol=1e-5, rtol=1e-5, msg=name)
    assert any(g.abs().max() > 1e-4 for g in pair_grads.values())
    # 6 unique sequences instead of 30 (padded tokens, one model; the reference forward scales the same).
    assert pair_tokens >= 3 * group_tokens


def test_group_rows_deduplicate_responses_of_pairs() -> None:
    group = c2_group(1)
    rows = group_rows(list(group.pairs()))
    assert len(rows) == 1
    row = rows[0]
    assert len(row["responses"]) == 6
    assert list(zip(row["chosen_index"], row["rejected_index"], strict=True)) == [
        (i, j) for i in range(6) for j in range(i + 1, 6)
    ]
    assert row == group_rows([group])[0]


def test_collator_offsets_pair_indices_per_group() -> None:
    from trainers.algorithms.group_dpo import GroupPreferenceCollator

    collate = GroupPreferenceCollator(pad_token_id=0)
    batch = collate(
        [
            {"prompt_ids": [5, 6], "response_ids": [[7], [8, 9]], "chosen_index": [0], "rejected_index": [1]},
            {
                "prompt_ids": [4],
                "response_ids": [[1], [2], [3]],
                "chosen_index": [0, 1],
                "rejected_index": [2, 2],
            },
        ]
    )
    assert batch["chosen_index"].tolist() == [0, 2, 3]
    assert batch["rejected_index"].tolist() == [1, 4, 4]
    assert batch["input_ids"].tolist()[1] == [5, 6, 8, 9]
    assert batch["completion_mask"].tolist()[1] == [0, 0, 1, 1]
    assert batch["attention_mask"].tolist()[2] == [1, 1, 0, 0]
