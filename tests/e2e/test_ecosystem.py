"""The outputs in tools nobody here wrote: datasets, TRL's trainers, huggingface_hub's card classes (issue 13).

Every config and side table loads with `datasets.load_dataset`; each method's default config trains
in plain TRL with the model's chat template; the card parses with `DatasetCard` and says what a Hub
reviewer needs; TRL-style training YAML works; the top-level Python API runs a recipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from factory.dataset.card import render_card
from factory.engine.output import export_context
from factory.engine.recipe import load_recipe
from factory.export.writer import write_records
from schemas.manifest import DatasetManifest, RowCounts
from tests.conftest import REPO
from tests.support.trainer_fixtures import safety_triple, tiny_llama

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def ptalign_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ptalign-demo recipe's outputs, written by the real exporters and writer from two finished
    rows (the demo run itself needs minutes and GBs), with its manifest and card."""
    loaded = load_recipe("ptalign-demo")
    out = tmp_path_factory.mktemp("ptalign") / "out"
    out.mkdir()
    finished = [
        {
            "_sp_id": f"d/{i}",
            "_sp_status": "ok",
            "triple": json.dumps(safety_triple(i).model_dump(mode="json", exclude={"provenance"})),
        }
        for i in range(2)
    ]
    quarantined = {"_sp_id": "d/9", "_sp_status": "quarantined", "_sp_stage": "toxic", "_sp_reason": "empty"}
    written = write_records(out, [*finished, quarantined], loaded.recipe.outputs, export_context(loaded))
    manifest = DatasetManifest.model_validate(
        {
            "safepref_version": "0.1.0",
            "recipe_name": loaded.recipe.name,
            "recipe_version": loaded.recipe.version,
            "recipe_hash": loaded.hash,
            "created_at": "2026-01-01T00:00:00+00:00",
            "seed": loaded.recipe.seed,
            "license": loaded.recipe.license,
            "configs": written.configs,
            "counts": RowCounts(
                input=2, created=1, expanded=0, output=written.output_rows, quarantined=written.quarantined
            ),
        }
    )
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2, by_alias=True))
    (out / "README.md").write_text(render_card(loaded.recipe, manifest, out))
    return out


def _configs(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())["configs"]


# ---- finding 2: every config and side table loads, with declared features -----------------------------


def _card_features(folder: Path) -> dict[str, Any]:
    from datasets import Features
    from huggingface_hub import DatasetCard

    infos = DatasetCard.load(folder / "README.md").data.dataset_info
    return {i["config_name"]: Features._from_yaml_list(i["features"]) for i in infos}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["c2syn-demo", "ptalign"])
def test_every_config_and_side_table_loads_with_the_features_the_card_declares(
    which: str, c2syn_demo_run: Path, ptalign_folder: Path
) -> None:
    import datasets

    folder = c2syn_demo_run if which == "c2syn-demo" else ptalign_folder
    declared = _card_features(folder)
    for name, info in _configs(folder).items():
        ds = datasets.load_dataset(str(folder), name, split="train")
        assert len(ds) == info["splits"]["train"]["num_rows"] > 0
        assert ds.features == declared[name]
        stored = json.loads(
            pq.read_schema(folder / info["splits"]["train"]["files"][0]).metadata[b"huggingface"]
        )
        assert datasets.Features.from_dict(stored["info"]["features"]) == declared[name]
    for side in ("filtered", "quarantine"):
        table = pq.ParquetFile(folder / side / "rows.parquet")
        assert b"huggingface" in table.schema_arrow.metadata
        stream = datasets.load_dataset(
            "parquet", data_files=str(folder / side / "rows.parquet"), streaming=True
        )
        assert len(list(stream["train"])) == table.metadata.num_rows
        if table.metadata.num_rows:
            assert (
                len(datasets.load_dataset("parquet", data_files=str(folder / side / "rows.parquet"))["train"])
                > 0
            )


def test_an_empty_config_is_written_as_datasets_writes_one_and_streams_with_its_features(
    tmp_path: Path,
) -> None:
    """A 0-row table gets no row group: a single empty one made datasets' reader fail ("BatchSize must be
    greater than 0"). datasets 5.2 still refuses a 0-row split when it builds an Arrow cache ("corresponds
    to no data", huggingface/datasets#8401), so the empty config is read by streaming."""
    import datasets

    loaded = load_recipe("ptalign-demo")
    nothing = [
        {"_sp_id": "0", "_sp_status": "filtered", "_sp_stage": "refine", "_sp_reason": "below_threshold"}
    ]
    write_records(tmp_path, nothing, loaded.recipe.outputs, export_context(loaded))
    shard = tmp_path / "pairs_conversational" / "train-00000-of-00001.parquet"
    assert pq.ParquetFile(shard).metadata.num_row_groups == 0
    stream = datasets.load_dataset("parquet", data_files=str(shard), split="train", streaming=True)
    assert list(stream) == [] and set(stream.features) >= {"prompt", "chosen", "rejected"}
    assert stream.features["prompt"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )
    quarantine = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "quarantine" / "rows.parquet"), streaming=True
    )
    assert list(quarantine["train"]) == []


# ---- finding 1: the default configs train in plain TRL with the chat template ---------------------------


def _one_cpu_step(out: Path) -> dict[str, Any]:
    return {"output_dir": str(out), "max_steps": 1, "bf16": False, "report_to": "none", "max_length": 256}


def _chat_templated(tokenizer: Any, ids: list[int]) -> bool:
    text = tokenizer.decode(ids)
    return "<|im_start|>user" in text


@pytest.mark.slow
@pytest.mark.parametrize("which", ["c2syn-demo", "ptalign"])
def test_each_default_config_trains_in_plain_trl_with_the_chat_template(
    which: str, c2syn_demo_run: Path, ptalign_folder: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    folder = c2syn_demo_run if which == "c2syn-demo" else ptalign_folder
    default = datasets.load_dataset(str(folder), split="train")  # what a user gets without naming a config
    # two rows: one step's log-probs over the 49k-token vocabulary cost seconds per row on a CPU
    default = default.select(range(min(2, len(default))))
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    args = DPOConfig(**_one_cpu_step(tmp_path))
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_dir),
        args=args,
        train_dataset=default,
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    assert _chat_templated(tokenizer, row["prompt_ids"])
    assert tokenizer.decode(row["prompt_ids"]).rstrip().endswith("<|im_start|>assistant")
    assert "<|im_end|>" in tokenizer.decode(row["chosen_ids"])
    trainer.train()
    assert trainer.state.global_step == 1


def test_the_ptalign_kto_config_trains_in_plain_trl_kto_with_the_chat_template(
    ptalign_folder: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    kto = datasets.load_dataset(str(ptalign_folder), "kto_conversational", split="train")
    assert sorted(kto["label"]) == [False, False, True, True]
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    args = KTOConfig(**_one_cpu_step(tmp_path))
    trainer = KTOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_dir),
        args=args,
        train_dataset=kto,
        processing_class=tokenizer,
    )
    assert _chat_templated(tokenizer, trainer.train_dataset[0]["prompt_ids"])
    trainer.train()
    assert trainer.state.global_step == 1


# ---- finding 3: cards a Hub maintainer would accept -------------------------------------------------------


@pytest.mark.slow
def test_the_demo_card_parses_with_huggingface_hub_and_says_what_a_reviewer_needs(
    c2syn_demo_run: Path,
) -> None:
    from huggingface_hub import DatasetCard

    from schemas.records import ConversationalPair

    card = DatasetCard.load(c2syn_demo_run / "README.md")
    assert card.data.source_datasets is None  # bundled demo rows are no Hub dataset
    assert (
        "a file bundled with safepref (`recipes/data/c2syn_demo.jsonl`)" in card.text
        and "PKU-SafeRLHF" not in card.text
    )
    assert "safepref publish" not in card.text  # nothing that holds only when uploaded with this tool
    assert "https://arxiv.org/abs/2407.16637" in card.text
    for section in ("## Fields", "## Example rows", "## Uses", "## Out-of-scope use", "## Limitations"):
        assert section in card.text
    assert "### Deviations from the method's reference" in card.text
    for name, field in ConversationalPair.model_fields.items():
        assert f"| `{name}` | " in card.text and str(field.description) in card.text
    configs = _configs(c2syn_demo_run)
    body = card.text.split("## Example rows", 1)[1].split("## Uses", 1)[0]
    assert body.count("```json") == 3 * len(configs)
    assert body.count("(contain harmful text)</summary>") == len(configs)  # all collapsed behind a warning
    assert all(len(line) < 200 for line in body.splitlines())  # long texts cut
    assert card.text.index("Content warning") < card.text.index("## Example rows")


def test_the_ptalign_card_explains_its_counts_and_cites_the_paper_in_full(ptalign_folder: Path) -> None:
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(ptalign_folder / "README.md")
    assert "reproducibility:" not in card.text  # no LLM in this run: nothing to say about decoding
    assert card.data.configs[0] == {
        "config_name": "pairs_conversational",
        "data_files": [{"split": "train", "path": "pairs_conversational/train-*.parquet"}],
        "default": True,
    }
    assert [i["config_name"] for i in card.data.dataset_info] == sorted(_configs(ptalign_folder))
    assert "a file bundled with safepref (`recipes/data/ptalign_seed.yaml`)" in card.text
    assert "- input rows: 2 (items of the seed file's `domains`)" in card.text
    assert "- created by expanding stages: 1" in card.text
    assert "https://arxiv.org/abs/2502.08657" in card.text
    assert "author={Xu, Jingxin and Nan, Guoshun and" in card.text and "and others}" not in card.text
    from factory.dataset.card_check import check_card

    assert check_card(ptalign_folder) == []


# ---- finding 4: TRL's field names at TRL's level, one place per value --------------------------------------


def _train_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "factory", "train", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_a_value_set_in_two_places_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "dpo.yaml"
    config.write_text(
        yaml.safe_dump({"algorithm": "dpo", "dpo": {"beta": 0.1}, "training": {"args": {"beta": 0.5}}})
    )
    result = _train_cli(str(config), "--dataset", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {config}: `training.args.beta` and `dpo.beta` both set beta; keep one"
    )


def test_a_trl_style_yaml_trains_with_the_values_it_names(tiny_dir: Path, tmp_path: Path) -> None:
    """`beta` at the top level, as `trl dpo --config` reads it: training, the resolved config and the
    model card all use 0.3 (TRL's saved training arguments are read back to check what training used)."""
    from tests.support.trainer_fixtures import c2_group, write_dataset
    from trainers.card import CONFIG_FILE
    from trainers.run import train

    data = write_dataset(tmp_path / "ds", {"pairs": ("preference_pair", list(c2_group(0).pairs()))})
    config = tmp_path / "trl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "algorithm": "dpo",
                "model_name_or_path": str(tiny_dir),
                "dataset_name": str(data),
                "output_dir": str(tmp_path / "out"),
                "beta": 0.3,
                "learning_rate": 1e-3,
                "max_steps": 1,
                "max_length": 256,
                "bf16": False,
                "logging_steps": 1,
            }
        )
    )
    out = train(str(config))
    used = torch.load(out / "training_args.bin", weights_only=False)
    assert (used.beta, used.learning_rate, used.max_steps) == (0.3, 1e-3, 1)
    resolved = yaml.safe_load((out / CONFIG_FILE).read_text())
    assert resolved["dpo"]["beta"] == 0.3 and resolved["training"]["args"] == {}
    assert "beta: 0.3" in (out / "README.md").read_text()


# ---- finding 5: a Python API ---------------------------------------------------------------------------------


def test_import_factory_stays_light_and_names_the_api() -> None:
    code = (
        "import sys, factory; heavy = {'torch', 'transformers', 'datasets', 'distilabel', 'trl'};"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules);"
        "print(sorted(n for n in factory.__all__))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    names = set(eval(result.stdout))
    assert {"load_recipe", "run_recipe", "plan_recipe", "check_folder", "publish_folder", "train"} <= names
    assert {"run_c2_eval", "run_harm_eval"} <= names


def test_the_top_level_api_plans_runs_and_checks_a_tiny_recipe(tmp_path: Path) -> None:
    import factory
    from tests.unit.factory.engine.test_engine import canned_recipe

    recipe = canned_recipe(tmp_path)
    for name in ("load_recipe", "run_recipe", "plan_recipe", "check_folder", "publish_folder", "train"):
        assert getattr(factory, name).__doc__, name
    plan = factory.plan_recipe(recipe, limit=4)
    assert plan.source_rows == 4 and [s.name for s in plan.stages][:2] == ["select", "truncate"]
    result = factory.run_recipe(recipe, tmp_path / "out", limit=4, allow_import_steps=True)
    assert result.manifest.counts.input == 4 and result.manifest.counts.output > 0
    assert factory.check_folder(tmp_path / "out").ok
    with pytest.raises(factory.UserError, match="no recipe file or built-in recipe"):
        factory.load_recipe("no-such-recipe")
