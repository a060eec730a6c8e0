"""Training on a published dataset: `safepref train --dataset owner/name@tag` reads, over real HTTP
from the Hub-protocol test server, exactly the rows that were published, at the commit the tag names,
and the model card records that commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from factory.core.errors import UserError  # noqa: E402
from factory.dataset.publish import publish_folder  # noqa: E402
from factory.engine.recipe import load_recipe  # noqa: E402
from factory.engine.run import run_recipe  # noqa: E402
from tests.support.hub_env import Hub  # noqa: E402
from tests.support.trainer_fixtures import tiny_llama  # noqa: E402
from tests.unit.factory.engine.test_engine import canned_recipe  # noqa: E402
from trainers.card import SUMMARY_FILE  # noqa: E402
from trainers.data import load_training_dataset  # noqa: E402
from trainers.run import train  # noqa: E402


def test_train_reads_the_published_rows_at_the_tag_and_records_the_commit(
    hub: Hub, datasets_client: object, tmp_path: Path
) -> None:
    folder = tmp_path / "c2"
    run_recipe(load_recipe(str(canned_recipe(tmp_path))), folder, allow_import_steps=True)
    published = publish_folder(folder, "alice/c2", tag="v0.1.0")
    assert published.commit_oid is not None

    local = load_training_dataset(str(folder), "dpo", config="groups")
    remote = load_training_dataset("alice/c2@v0.1.0", "dpo", config="groups")
    assert remote.revision == published.commit_oid  # the tag, resolved to its commit
    assert [r.model_dump() for r in remote.records] == [r.model_dump() for r in local.records]
    assert remote.manifest == local.manifest and remote.source == "alice/c2"

    with pytest.raises(UserError, match="holds 'c2_group' records"):
        load_training_dataset("alice/c2@v0.1.0", "ptalign", config="groups")

    torch.set_num_threads(1)
    model = tiny_llama(tmp_path / "tiny")
    config = tmp_path / "train.yaml"
    training = {"max_steps": 1, "logging_steps": 1, "save_steps": 1000, "max_length": 256, "seed": 0}
    config.write_text(yaml.safe_dump({"algorithm": "dpo", "dataset_config": "groups", "training": training}))
    out = train(str(config), dataset="alice/c2@v0.1.0", model=str(model), out=str(tmp_path / "out"))
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["dataset"] == "alice/c2" and summary["dataset_revision"] == published.commit_oid
    assert published.commit_oid in (out / "README.md").read_text()
