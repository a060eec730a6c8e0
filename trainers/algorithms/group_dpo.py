"""Group-aware DPO: score each response of a prompt group once, then form every pair loss from those scores.

C²-Syn gives 6 ranked responses and 15 pairs per prompt. Per-pair DPO runs 30 policy and 30 reference
sequences per group; this trainer runs 6 + 6 and gathers the 15 (chosen, rejected) log-prob sums, with
TRL's loss formulas (`trainers.losses.dpo_pair_losses_from_logps`), so loss and gradients equal per-pair
DPO on the same pairs (tests/unit/trainers/test_group_dpo.py). The reference model is handled exactly as TRL's
`DPOTrainer` does (PEFT adapter disabled, or a frozen copy).

Imports torch and trl at module level: import this module only where training happens.

Expected dataset format (one row per group): `prompt` (messages), `responses` (list of assistant message
lists), `chosen_index` / `rejected_index` (equal-length lists of indices into `responses`).
`per_device_train_batch_size` counts groups.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
from torch.nn.utils.rnn import pad_sequence
from trl import DPOConfig, DPOTrainer
from trl.data_utils import _tokenize, common_prefix_length
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

from trainers.losses import dpo_pair_losses_from_logps


def tokenize_group(example: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """Prompt ids once, then each response's ids (TRL's rule: the completion starts where ids diverge)."""
    prompt_ids = _tokenize(tokenizer, example["prompt"], add_generation_prompt=True)["input_ids"]
    full = [_tokenize(tokenizer, example["prompt"] + r)["input_ids"] for r in example["responses"]]
    prompt_len = min(common_prefix_length(prompt_ids, ids) for ids in full)
    return {"prompt_ids": prompt_ids[:prompt_len], "response_ids": [ids[prompt_len:] for ids in full]}


@dataclass
class GroupPreferenceCollator:
    """Flattens groups into one batch of unique sequences and offsets the pair indices into it."""

    pad_token_id: int
    max_length: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        chosen: list[int] = []
        rejected: list[int] = []
        for ex in examples:
            base = len(seqs)
            prompt = list(ex["prompt_ids"])
            for response in ex["response_ids"]:
                ids = (prompt + list(response))[: self.max_length]
                mask = ([0] * len(prompt) + [1] * len(response))[: self.max_length]
                seqs.append(torch.tensor(ids, dtype=torch.long))
                masks.append(torch.tensor(mask, dtype=torch.long))
            chosen.extend(base + int(i) for i in ex["chosen_index"])
            rejected.extend(base + int(j) for j in ex["rejected_index"])
        return {
            "input_ids": pad_sequence(seqs, batch_first=True, padding_value=self.pad_token_id),
            "attention_mask": pad_sequence(
                [torch.ones_like(s) for s in seqs], batch_first=True, padding_value=0
            ),
            "completion_mask": pad_sequence(masks, batch_first=True, padding_value=0),
            "chosen_index": torch.tensor(chosen, dtype=torch.long),
            "rejected_index": torch.tensor(rejected, dtype=torch.long),
        }


class GroupDPOTrainer(DPOTrainer):
    """`DPOTrainer` whose batches are prompt groups; supports TRL's reverse-KL `sigmoid`, `hinge`, `ipo`,
    `robust` and `sigmoid_norm` losses (one loss type, no `ld_alpha`, no WPO weighting)."""

    _tag_names = ["trl", "dpo", "safepref-group-dpo"]

    def __init__(
        self,
        model: Any,
        ref_model: Any = None,
        args: DPOConfig | None = None,
        data_collator: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        if args is not None:
            if len(args.loss_type) != 1 or args.ld_alpha is not None or args.use_weighting:
                raise ValueError("group-aware DPO supports one loss_type, no ld_alpha and no use_weighting")
            if args.precompute_ref_log_probs or args.f_divergence_type != "reverse_kl":
                raise ValueError("group-aware DPO computes reverse-KL reference log-probs per group")
        if data_collator is None and processing_class is not None:
            pad = processing_class.pad_token_id
            pad = processing_class.eos_token_id if pad is None else pad
            data_collator = GroupPreferenceCollator(pad, max_length=args.max_length if args else None)
        super().__init__(
            model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            processing_class=processing_class,
            **kwargs,
        )

    def _prepare_dataset(
        self, dataset: Any, processing_class: Any, args: DPOConfig, dataset_name: str
    ) -> Any:
        if "prompt_ids" in dataset.column_names:
            return dataset
        map_kwargs: dict[str, Any] = {"fn_kwargs": {"tokenizer": processing_class}}
        if isinstance(dataset, Dataset):
            map_kwargs.update(num_proc=args.dataset_num_proc, desc=f"Tokenizing {dataset_name} groups")
        dataset = dataset.map(tokenize_group, remove_columns=["prompt", "responses"], **map_kwargs)
        if args.max_length is not None:
            dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < args.max_length)
        return dataset

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            columns: Any = ["prompt_ids", "response_ids", "chosen_index", "rejected_index"]
            self._signature_columns = columns

    def sequence_logps(
        self, model: Any, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs of every sequence in the batch: (policy, reference)."""
        model_kwargs = {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "use_cache": False,
        }
        completion_mask = inputs["completion_mask"]
        seq_len = completion_mask.size(1) - 1
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        policy: Any = self.model
        ckpt_kwargs: Any = self.args.gradient_checkpointing_kwargs
        ref_model: Any = self.ref_model
        ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        with torch.no_grad(), disable_gradient_checkpointing(policy, ckpt_kwargs):
            if is_peft_model(policy) and ref_model is None:
                # As TRL: a fresh adapter is disabled; a pre-trained one is swapped for its "ref" copy.
                unwrapped = self.accelerator.unwrap_model(policy)
                ctx = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
                ref_model = policy
            with ctx:
                ref_outputs = ref_model(**model_kwargs, labels=labels, fused_lm_head=True)
        ref_logps = ref_outputs.log_probs[:, -seq_len:].sum(dim=1)
        return logps, ref_logps

    def _compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool) -> Any:
        if return_outputs:
            raise NotImplementedError("group-aware DPO returns the loss only")
        mode = "train" if model.training else "eval"
        logps, ref_logps = self.sequence_logps(model, inputs)
        c, r = inputs["chosen_index"], inputs["rejected_index"]
        lengths = inputs["completion_mask"].sum(dim=1).to(logps.dtype)
        losses = dpo_pair_losses_from_logps(
            logps[c],
            logps[r],
            ref_logps[c],
            ref_logps[r],
            beta=self.beta,
            loss_type=self.loss_types[0],
            label_smoothing=self.label_smoothing,
            chosen_lengths=lengths[c],
            rejected_lengths=lengths[r],
        )
        loss = losses.mean()

        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        chosen_rewards = self.beta * (logps[c] - ref_logps[c]).detach()
        rejected_rewards = self.beta * (logps[r] - ref_logps[r]).detach()
        gather = self.accelerator.gather
        self._metrics[mode]["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        self._metrics[mode]["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        self._metrics[mode]["rewards/accuracies"].append(
            gather((chosen_rewards > rejected_rewards).float()).mean().item()
        )
        self._metrics[mode]["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        self._metrics[mode]["logps/chosen"].append(gather(logps[c].detach()).mean().item())
        self._metrics[mode]["logps/rejected"].append(gather(logps[r].detach()).mean().item())
        return loss
