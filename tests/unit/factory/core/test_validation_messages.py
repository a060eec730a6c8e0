"""One formatter for every pydantic error a user sees, and one reader of the dataset folder's manifest:
given this input, this one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from factory.core.config_files import format_validation_error
from factory.core.dataset_folder import read_manifest, read_manifest_file
from factory.core.errors import UserError
from factory.engine.recipe import load_recipe
from tests.conftest import REPO


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: Inner
    low: int = 0
    high: int = 1

    @model_validator(mode="after")
    def _ordered(self) -> Outer:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate(data)
    return caught.value


def test_a_field_error_names_its_dotted_path() -> None:
    assert format_validation_error(_error({"inner": {"size": "big"}})) == (
        "inner.size: Input should be a valid integer, unable to parse string as an integer"
    )


def test_an_unknown_field_is_called_unknown_at_any_depth() -> None:
    assert format_validation_error(_error({"inner": {"size": 1}, "colour": 1})) == "colour: unknown field"
    assert (
        format_validation_error(_error({"inner": {"size": 1, "colour": 1}})) == "inner.colour: unknown field"
    )


def test_an_error_about_the_whole_object_is_its_message_alone() -> None:
    assert format_validation_error(_error({"inner": {"size": 1}, "low": 2})) == "low must not exceed high"


def test_further_errors_are_counted_not_listed() -> None:
    assert format_validation_error(_error({"inner": {}, "low": "x", "high": "y"})) == (
        "inner.size: Field required (+2 more)"
    )


def test_the_caller_names_the_place_as_its_user_knows_it() -> None:
    message = format_validation_error(
        _error({"inner": {}}), location=lambda loc: "--" + "-".join(map(str, loc))
    )
    assert message == "--inner-size: Field required"


def test_a_step_param_error_reads_like_any_recipe_field(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "recipes" / "c2syn-demo.yaml").read_text())
    data["stages"][1]["params"] = {"mood": "x", "mode": "loose"}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as caught:
        load_recipe(str(path))
    name = data["stages"][1]["name"]
    # the step's own params model reports both errors; the first is named by stage name and path
    assert str(caught.value).startswith(f"{path}: stages[{name}].params.")
    assert str(caught.value).endswith("(+1 more)")


def _manifest_folder(tmp_path: Path, text: str | None) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir()
    if text is not None:
        (folder / "manifest.json").write_text(text)
    return folder


def test_a_folder_without_a_manifest_is_not_a_dataset_folder(tmp_path: Path) -> None:
    folder = _manifest_folder(tmp_path, None)
    with pytest.raises(UserError) as caught:
        read_manifest(folder)
    assert str(caught.value) == f"{folder}: not a safepref dataset folder (no manifest.json)"


def test_a_manifest_that_is_not_json(tmp_path: Path) -> None:
    folder = _manifest_folder(tmp_path, "{not json")
    with pytest.raises(UserError, match=r"manifest.json: invalid manifest: not JSON \("):
        read_manifest(folder)


def test_an_invalid_manifest_names_the_field(tmp_path: Path) -> None:
    folder = _manifest_folder(tmp_path, json.dumps({"recipe_name": "x"}))
    with pytest.raises(UserError) as caught:
        read_manifest_file(folder / "manifest.json", where="owner/repo/manifest.json")
    assert str(caught.value).startswith(
        "owner/repo/manifest.json: invalid manifest: safepref_version: Field required (+"
    )
