"""A Hub source read with the real `datasets.load_dataset` from the Hub-protocol test server: the
revision is honoured and resolved to the commit read, and an upstream change under an unpinned
revision makes the next run start afresh instead of reusing the old one."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from factory.check import check_folder
from factory.engine import run_recipe
from factory.recipe_loader import load_recipe
from tests.hub_env import Hub
from tests.test_engine import DEMO_ROWS, canned_recipe

REPO_ID = "alice/pku-mini"


def _push(hub: Hub, rows: list[dict[str, Any]], message: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(REPO_ID, repo_type="dataset", private=True, exist_ok=True)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    info = api.upload_file(
        path_or_fileobj=buf.getvalue(),
        path_in_repo="data/train-00000-of-00001.parquet",
        repo_id=REPO_ID,
        repo_type="dataset",
        commit_message=message,
    )
    return str(info.oid)


def _recipe(tmp_path: Path, name: str, revision: str | None) -> Path:
    source = {"kind": "hub", "dataset": REPO_ID, "split": "train", "revision": revision}
    path = canned_recipe(tmp_path, source=source)
    pinned = tmp_path / f"{name}.yaml"
    pinned.write_text(yaml.safe_dump(yaml.safe_load(path.read_text())))
    return pinned


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def test_hub_source_pins_resolves_and_notices_upstream_changes(
    hub: Hub, datasets_client: object, tmp_path: Path
) -> None:
    first = _push(hub, DEMO_ROWS, "all twelve rows")
    out = tmp_path / "unpinned"
    unpinned = _recipe(tmp_path, "unpinned", None)
    result = run_recipe(load_recipe(str(unpinned)), out, allow_import_steps=True)
    assert result.manifest.counts.input == 12 and result.manifest.counts.output == 9
    m = _manifest(out)
    assert m["source"]["read"] == f"hub:{REPO_ID}@{first}"  # main, resolved to the commit read
    source_hash = m["inputs_sha256"][f"source:hub:{REPO_ID}"]
    assert check_folder(out).ok

    second = _push(hub, DEMO_ROWS[:5], "five rows")
    assert second != first
    again = run_recipe(load_recipe(str(unpinned)), out, allow_import_steps=True)
    assert again.manifest.counts.input == 5  # the same recipe, new upstream rows: run afresh
    m = _manifest(out)
    assert m["source"]["read"] == f"hub:{REPO_ID}@{second}"
    assert m["inputs_sha256"][f"source:hub:{REPO_ID}"] != source_hash
    assert pq.read_table(out / "groups").num_rows == again.manifest.counts.output

    pinned_out = tmp_path / "pinned"
    pinned = run_recipe(
        load_recipe(str(_recipe(tmp_path, "pinned", first))), pinned_out, allow_import_steps=True
    )
    assert pinned.manifest.counts.input == 12  # the pinned commit, not the newer main
    m = _manifest(pinned_out)
    assert m["source"]["read"] == f"hub:{REPO_ID}@{first}"
    assert m["inputs_sha256"][f"source:hub:{REPO_ID}"] == source_hash
    assert (pinned_out / "groups").is_dir() and check_folder(pinned_out).ok


def test_a_missing_hub_dataset_is_one_clear_error(hub: Hub, datasets_client: object, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    path = canned_recipe(tmp_path, source={"kind": "hub", "dataset": "alice/nope", "split": "train"})
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory",
            "run",
            str(path),
            "--out",
            str(tmp_path / "o"),
            "--allow-import-steps",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "HF_HOME": str(tmp_path / "home"), "HF_DATASETS_CACHE": str(tmp_path / "dsc")},
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr  # a user error
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "hub:alice/nope" in lines[0] and "Traceback" not in proc.stderr
    assert hub.token not in proc.stderr + proc.stdout


def test_eval_data_from_the_hub_records_the_commit_read(
    hub: Hub, datasets_client: object, tmp_path: Path
) -> None:
    from factory.evaluation.eval_data import load_c2_rows, source_spec

    commit = _push(hub, DEMO_ROWS, "eval rows")
    spec = source_spec(f"hub:{REPO_ID}", default_bundled="unused", split="train", config=None)
    rows, info = load_c2_rows(spec, 3)
    assert len(rows) == 3 and info.source == f"hub:{REPO_ID}" and info.revision == commit
