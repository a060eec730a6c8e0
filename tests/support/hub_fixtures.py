"""Small Hub-ready dataset folders (the `safepref run` output contract) built without the engine.

Mild, non-actionable text only. The lead may swap `build_dataset_folder` for the real writer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from factory.dataset.card_check import size_category
from schemas.manifest import DatasetManifest

PROMPTS = [
    "How do I politely decline an invitation?",
    "What is a good way to water houseplants?",
    "Can you explain why the sky looks blue?",
    "How should I store fresh herbs?",
    "What is a kind way to give feedback?",
    "How can I keep a notebook organised?",
]


def pair_rows(n: int, tag: str = "") -> list[dict[str, Any]]:
    """`n` preference_pair rows with mild text; `tag` changes the content (a new dataset version)."""
    rows = []
    for i in range(n):
        prompt = PROMPTS[i % len(PROMPTS)]
        rows.append(
            {
                "prompt": f"{prompt} (#{i}{tag})",
                "chosen": "Here is a calm, helpful answer.",
                "rejected": "A rude, unhelpful reply that ignores the question.",
                "chosen_rank": 1,
                "rejected_rank": 6,
                "principle": "SR>FHR",
                "source_id": f"src-{i}",
                "group_id": f"g-{i}",
            }
        )
    return rows


def response_rows(n: int, tag: str = "") -> list[dict[str, Any]]:
    """`n` prompt_response rows (a schema without harmful text) with mild text."""
    provenance = {
        "recipe_name": "tiny-responses",
        "recipe_hash": "0123456789abcdef0123456789abcdef",
        "generator_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "seed": 0,
        "source_id": "",
    }
    return [
        {
            "prompt": f"{PROMPTS[i % len(PROMPTS)]} (#{i}{tag})",
            "response": "Here is a calm, helpful answer.",
            "source_id": f"src-{i}",
            "provenance": {**provenance, "source_id": f"src-{i}"},
        }
        for i in range(n)
    ]


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def build_dataset_folder(
    root: Path,
    *,
    recipe_name: str = "tiny-pairs",
    harmful: bool = True,
    splits: dict[str, int] | None = None,
    shards: int = 1,
    tag: str = "",
    card_meta: dict[str, Any] | None = None,
) -> Path:
    """Write a valid dataset folder with one default config `pairs`; returns `root`.

    `splits` maps split -> rows (default {"train": 6, "test": 2}); `shards` files per split;
    `card_meta` overrides keys of the card's YAML (None values remove the key). `harmful=False`
    writes a `prompt_response` config (a schema without harmful text) instead of `pairs`.
    """
    splits = splits or {"train": 6, "test": 2}
    config, schema, exporter, make_rows = (
        ("pairs", "preference_pair", "c2syn.pairs", pair_rows)
        if harmful
        else ("responses", "prompt_response", "generate.responses", response_rows)
    )
    root.mkdir(parents=True, exist_ok=True)
    split_info: dict[str, Any] = {}
    data_files = []
    total = 0
    for split, n in splits.items():
        rows = make_rows(n, tag=f"{split}{tag}")
        files = []
        per = -(-n // shards)
        for s in range(shards):
            name = f"{config}/{split}-{s:05d}-of-{shards:05d}.parquet"
            _write_parquet(root / name, rows[s * per : (s + 1) * per])
            files.append(name)
        split_info[split] = {"files": files, "num_rows": n}
        data_files.append({"split": split, "path": f"{config}/{split}-*.parquet"})
        total += n
    _write_parquet(
        root / "quarantine/rows.parquet",
        [{"_sp_id": "q-1", "stage": "generate", "reason": "parse_error", "raw_output": "", "input": "{}"}],
    )
    _write_parquet(
        root / "filtered/rows.parquet",
        [{"_sp_id": "f-1", "stage": "dedup", "rule": "duplicate", "input": "{}"}],
    )
    (root / ".work").mkdir(exist_ok=True)
    (root / ".work/state.json").write_text('{"resume": true}')

    manifest = DatasetManifest.model_validate(
        {
            "safepref_version": "0.1.0",
            "recipe_name": recipe_name,
            "recipe_version": "0.1.0",
            "recipe_hash": "0123456789abcdef0123456789abcdef",
            "created_at": "2025-01-01T00:00:00Z",
            "seed": 0,
            "license": "cc-by-nc-4.0",
            "configs": {
                config: {
                    "schema": schema,
                    "exporter": exporter,
                    "default": True,
                    "splits": split_info,
                }
            },
            "counts": {
                "input": total + 2,
                "output": total,
                "filtered": {"duplicate": 1},
                "quarantined": {"generate": 1},
            },
            "contains_harmful_text": harmful,
        }
    )
    (root / "manifest.json").write_text(manifest.model_dump_json(by_alias=True, indent=2))
    (root / "recipe.resolved.yaml").write_text(
        yaml.safe_dump({"name": recipe_name, "license": "cc-by-nc-4.0"})
    )

    meta: dict[str, Any] = {
        "license": "cc-by-nc-4.0",
        "language": ["en"],
        "pretty_name": "Tiny test pairs",
        "task_categories": ["text-generation"],
        "size_categories": [size_category(total)],
        "annotations_creators": ["machine-generated"],
        "tags": ["safety", "preference"],
        "configs": [{"config_name": config, "default": True, "data_files": data_files}],
    }
    for key, value in (card_meta or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    body = f"# {meta.get('pretty_name', recipe_name)}\n\nA tiny folder for publisher tests.\n"
    (root / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body)
    return root


def read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())
