"""Helpers for the trainer tests: a tiny Llama with the bundled tokenizer, and small dataset folders.

Fixture text is mild and non-actionable (rude-neighbour level at worst).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.manifest import ConfigInfo, DatasetManifest, GeneratorInfo, RowCounts, SplitInfo
from schemas.provenance import Provenance
from schemas.records import C2Group, RankedResponse, SafetyTriple, ToxicSpan

RECIPE_HASH = hashlib.sha256(b"fixture-recipe").hexdigest()

PROMPTS = [
    "How do I get back at a rude neighbour?",
    "What should I say to a coworker who keeps interrupting me?",
    "How can I make my noisy roommate regret it?",
]
FHRS = [
    "Sure, just leave rude notes on their door, glare at them every morning, and tell the whole street "
    "that they are a pathetic, boring person who nobody likes; then ignore them at every single chance.",
    "Easy: roll your eyes, mock their ideas in front of everyone, call them clueless, and keep talking "
    "over them; make sure they feel small, stupid and unwelcome at every meeting from now on.",
    "Blast loud music, leave dirty dishes in their room, call them a useless slob to their friends, "
    "and keep complaining about them online until they feel embarrassed, lonely and ashamed.",
]
SAFE = [
    "It is better to talk calmly with your neighbour, explain what bothers you, and look for a fair compromise.",
    "Try a friendly, direct chat: say you would like to finish your point, and suggest taking turns.",
    "Talk to your roommate at a calm moment, agree on quiet hours, and write the agreement down together.",
]


def tiny_llama(out: Path, *, hidden: int = 32, layers: int = 2) -> Path:
    """Save a randomly initialised tiny LlamaForCausalLM with the bundled SmolLM2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from factory.core.models import bundled_model_dir

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def provenance(source_id: str) -> Provenance:
    return Provenance(
        recipe_name="fixture",
        recipe_hash=RECIPE_HASH,
        generator_model="fixture-model",
        seed=0,
        source_id=source_id,
    )


def c2_group(i: int) -> C2Group:
    """A valid C²-Syn group: FHR cut at four delimiters, each SYN = opener prefix trigger continuation."""
    fhr = FHRS[i % len(FHRS)]
    commas = [k for k, ch in enumerate(fhr) if ch in ",;"]
    cuts = [commas[0] + 1, commas[1] + 1, commas[2] + 1, commas[3] + 1]
    responses = [RankedResponse(rank=1, kind="SR", text=SAFE[i % len(SAFE)], cut_index=None, cut_char=None)]
    for n, cut in enumerate(cuts, start=1):
        prefix = fhr[:cut]
        opener, trigger, cont = (
            "Sure, I can help you with that.",
            "but I must point out that",
            " being kind works better.",
        )
        responses.append(
            RankedResponse(
                rank=n + 1,
                kind="SYN",
                text=f"{opener} {prefix} {trigger}{cont}",
                cut_index=n,
                cut_char=len(prefix),
                opener=opener,
                prefix=prefix,
                trigger=trigger,
                continuation=cont,
            )
        )
    responses.append(RankedResponse(rank=6, kind="FHR", text=fhr, cut_index=None, cut_char=None))
    return C2Group(
        group_id=f"g{i}",
        source_id=f"s{i}",
        prompt=PROMPTS[i % len(PROMPTS)],
        responses=responses,
        delimiter_count=len(commas),
        t_k=1,
        truncation_mode="strict",
        seed=i,
        provenance=provenance(f"s{i}"),
    )


def safety_triple(i: int) -> SafetyTriple:
    toxic = FHRS[i % len(FHRS)]
    word = "pathetic" if "pathetic" in toxic else ("clueless" if "clueless" in toxic else "useless")
    start = toxic.index(word)
    return SafetyTriple(
        id=f"t{i}",
        domain="harassment",
        topic="neighbours",
        instruction=PROMPTS[i % len(PROMPTS)],
        positive=SAFE[i % len(SAFE)],
        toxic=toxic,
        toxic_spans=[ToxicSpan(start=start, end=start + len(word), label="insult")],
        rounds=1,
        constraints_version="v1",
        provenance=provenance(f"s{i}"),
    )


def write_dataset(
    folder: Path,
    configs: dict[str, tuple[str, list[BaseModel]]],
    *,
    recipe: str = "fixture",
    generators: tuple[str, ...] = (),
) -> Path:
    """A dataset folder per docs/design.md: manifest.json + <config>/train-00000-of-00001.parquet.

    `configs` maps config name -> (schema name, records); the first config is the default.
    `generators` are the models the manifest says generated the data.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    infos: dict[str, ConfigInfo] = {}
    total = 0
    for n, (name, (schema, records)) in enumerate(configs.items()):
        rel = f"{name}/train-00000-of-00001.parquet"
        (folder / name).mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = [r.model_dump(mode="json") for r in records]
        pq.write_table(pa.Table.from_pylist(rows), folder / rel)
        infos[name] = ConfigInfo.model_validate(
            {
                "schema": schema,
                "exporter": schema,
                "default": n == 0,
                "splits": {"train": SplitInfo(files=[rel], num_rows=len(rows))},
            }
        )
        total = max(total, len(rows))
    manifest = DatasetManifest(
        safepref_version="0.1.0",
        recipe_name=recipe,
        recipe_version="1",
        recipe_hash=RECIPE_HASH,
        created_at="2025-01-01T00:00:00Z",
        seed=0,
        license="cc-by-nc-4.0",
        configs=infos,
        counts=RowCounts(input=total, created=0, expanded=0, output=total),
        generators=[
            GeneratorInfo(backend=f"b{i}", kind="transformers", model=m) for i, m in enumerate(generators)
        ],
    )
    (folder / "manifest.json").write_text(manifest.model_dump_json(by_alias=True, indent=2), encoding="utf-8")
    return folder
