"""The PT-ALIGN seed file: fewer than 50 human items, required fields, and reading it as source rows."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from factory.core.errors import UserError
from factory.core.sources import read_source
from factory.engine.recipe import load_recipe
from schemas.methods.ptalign_seed import MAX_HUMAN_ITEMS, PTAlignSeed
from schemas.recipe import SourceSpec
from tests.conftest import REPO

SEED_PATH = REPO / "recipes" / "data" / "ptalign_seed.yaml"


def seed_with(domains: int, positive: int, toxic: int, demos: int) -> dict[str, Any]:
    return {
        "domains": [{"id": f"d{i}", "domain": f"domain {i}"} for i in range(domains)],
        "positive_constraints": [f"be kind {i}" for i in range(positive)],
        "toxic_constraints": [f"be dismissive {i}" for i in range(toxic)],
        "demonstrations": [
            {"instruction": f"q{i}", "positive": f"kind answer {i}", "toxic": f"rude answer {i}"}
            for i in range(demos)
        ],
    }


def write_seed(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def seed_source(path: Path) -> SourceSpec:
    return SourceSpec(
        kind="file", path=str(path), file_schema="ptalign_seed", records_key="domains", id_field="id"
    )


def test_49_human_items_are_accepted_and_50_rejected() -> None:
    # 4 domains + 3 + 3 constraints + 13 demonstrations x 3 texts = 49
    assert PTAlignSeed.model_validate(seed_with(4, 3, 3, 13)).human_items() == MAX_HUMAN_ITEMS == 49
    with pytest.raises(ValidationError, match="holds 50 human items"):
        PTAlignSeed.model_validate(seed_with(5, 3, 3, 13))


def test_each_demonstration_counts_three_human_texts() -> None:
    assert PTAlignSeed.model_validate(seed_with(1, 1, 1, 2)).human_items() == 1 + 1 + 1 + 6


def test_a_seed_over_the_limit_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    path = write_seed(tmp_path, seed_with(10, 10, 10, 7))
    with pytest.raises(UserError, match=r"seed\.yaml: .*51 human items.*fewer than 50"):
        read_source(seed_source(path), tmp_path)


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        ("toxic_constraints", r"toxic_constraints: Field required"),
        ("domains", r"domains: Field required"),
    ],
)
def test_a_missing_field_is_a_user_error_naming_it(tmp_path: Path, drop: str, expected: str) -> None:
    data = seed_with(2, 1, 1, 1)
    del data[drop]
    with pytest.raises(UserError, match=expected):
        read_source(seed_source(write_seed(tmp_path, data)), tmp_path)


def test_a_demonstration_without_its_toxic_answer_is_rejected(tmp_path: Path) -> None:
    data = seed_with(2, 1, 1, 2)
    del data["demonstrations"][1]["toxic"]
    with pytest.raises(UserError, match=r"demonstrations\.1\.toxic: Field required"):
        read_source(seed_source(write_seed(tmp_path, data)), tmp_path)


def test_a_demonstration_for_an_unknown_domain_is_rejected() -> None:
    data = seed_with(2, 1, 1, 1)
    data["demonstrations"][0]["domain"] = "nope"
    with pytest.raises(ValidationError, match="'nope' is not a domain id"):
        PTAlignSeed.model_validate(data)


def test_the_shipped_seed_is_valid_and_small() -> None:
    seed = PTAlignSeed.model_validate(yaml.safe_load(SEED_PATH.read_text()))
    assert seed.human_items() < 50
    assert len(seed.domains) >= 2 and seed.demonstrations


def test_domains_become_rows_carrying_the_seed_and_its_hash(tmp_path: Path) -> None:
    path = write_seed(tmp_path, seed_with(3, 2, 1, 1))
    rows, _ = read_source(seed_source(path), tmp_path)
    assert [r["_sp_id"] for r in rows] == ["d0", "d1", "d2"]
    assert [r["domain"] for r in rows] == ["domain 0", "domain 1", "domain 2"]
    assert all(r["positive_constraints"] == ["be kind 0", "be kind 1"] for r in rows)
    assert all(r["demonstrations"][0]["toxic"] == "rude answer 0" for r in rows)
    assert {r["source_sha256"] for r in rows} == {hashlib.sha256(path.read_bytes()).hexdigest()}
    assert all(r["domain_description"] == "" for r in rows)  # defaults are filled in


def test_records_key_is_rejected_for_hub_sources() -> None:
    with pytest.raises(ValidationError, match="apply to `file` and `bundled` sources"):
        SourceSpec(kind="hub", dataset="a/b", records_key="domains")


def test_unknown_file_schema_is_rejected_when_the_recipe_loads() -> None:
    with pytest.raises(ValidationError, match="unknown file_schema 'nope'"):
        SourceSpec(kind="file", path="x.yaml", file_schema="nope")


def test_both_builtin_recipes_load_and_read_the_bundled_seed() -> None:
    for name in ("ptalign", "ptalign-demo"):
        loaded = load_recipe(name)
        rows, _ = read_source(loaded.recipe.source, loaded.base_dir)
        assert rows and all(r["domain_id"] == r["_sp_id"] for r in rows)
    assert len(read_source(load_recipe("ptalign-demo").recipe.source, REPO)[0]) == 2  # source.limit


def test_a_run_records_the_seed_file_and_every_template_it_renders() -> None:
    from factory.core.hashing import input_hashes
    from factory.core.templates import template_sha256

    loaded = load_recipe("ptalign-demo")
    hashes = input_hashes(loaded.recipe, loaded.base_dir)
    assert hashes.pop("source:ptalign_seed.yaml") == hashlib.sha256(SEED_PATH.read_bytes()).hexdigest()
    names = sorted(f"ptalign/{p.name}" for p in (REPO / "recipes" / "templates" / "ptalign").glob("*.jinja"))
    assert sorted(hashes) == [f"template:{n}" for n in names]
    assert all(hashes[f"template:{n}"] == template_sha256(n) for n in names)
