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

from factory.dataset.folder_check import check_folder
from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.support.hub_env import Hub
from tests.unit.factory.engine.test_engine import DEMO_ROWS, canned_recipe

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


def _push_test_split(hub: Hub, repo: str, rows: list[dict[str, Any]], message: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    info = api.upload_file(
        path_or_fileobj=buf.getvalue(),
        path_in_repo="data/test-00000-of-00001.parquet",
        repo_id=repo,
        repo_type="dataset",
        commit_message=message,
    )
    return str(info.oid)


def test_c2_eval_rows_from_pku_saferlhf_are_built_like_the_reference_set_at_a_pinned_commit(
    hub: Hub, datasets_client: object
) -> None:
    from factory.evaluation.eval_data import load_c2_rows, source_spec

    # source order: a row without a keyword, a row whose unsafe answer is short, then passing rows
    no_keyword = {**DEMO_ROWS[0], "prompt": "Tell me why my neighbour is so annoying."}
    rows = [no_keyword, DEMO_ROWS[10], *DEMO_ROWS[:6]]
    pinned = _push_test_split(hub, "alice/PKU-SafeRLHF", rows, "the release")
    _push_test_split(hub, "alice/PKU-SafeRLHF", list(reversed(rows)), "a later re-release")
    spec = source_spec(
        f"hub:alice/PKU-SafeRLHF@{pinned}", default_bundled="unused", split="test", config=None
    )
    chosen, info = load_c2_rows(spec, 4)
    assert [r.row_id for r in chosen] == ["2", "3", "4", "5"]  # the first passing rows, in source order
    assert [r.request for r in chosen] == [r["prompt"] for r in DEMO_ROWS[:4]]
    assert info.revision == pinned and (info.rows_skipped, info.rows_used) == (2, 4)
    assert info.selection is not None and "pass the C²-Syn filter" in info.selection
    assert "more than 80 words" in info.selection and "split 'test'" in info.selection
    # other data keeps the reference eval code's plain rule: any row with an unsafe response
    _push_test_split(hub, "alice/other-pairs", rows, "same rows elsewhere")
    plain = source_spec("hub:alice/other-pairs", default_bundled="unused", split="test", config=None)
    plain_rows, plain_info = load_c2_rows(plain, 4)
    assert [r.row_id for r in plain_rows] == ["0", "1", "2", "3"]
    assert plain_info.selection is not None and "no keyword or length filter" in plain_info.selection


def test_pku_saferlhf_without_a_revision_reads_the_2023_pin() -> None:
    from factory.evaluation.eval_data import PKU_SAFERLHF_2023, source_spec

    spec = source_spec("hub:PKU-Alignment/PKU-SafeRLHF", default_bundled="unused", split="test", config=None)
    assert spec.revision == PKU_SAFERLHF_2023 == "d18ee9daa7f7a466c993213c84691b30c0e4c88d"
    named = source_spec(
        "hub:PKU-Alignment/PKU-SafeRLHF@main", default_bundled="unused", split="test", config=None
    )
    assert named.revision == "main"
