"""publish_folder against the Hub-protocol test server: real huggingface_hub/datasets clients, real HTTP."""

from __future__ import annotations

import email.utils
import io
import json
import logging
import math
import secrets
import socket
import time
import traceback
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from factory.core.errors import UserError
from factory.dataset import publish as publisher
from factory.dataset.card_check import split_card
from factory.dataset.publish import CONTENT_WARNING, HARMFUL_TAG, prepare_card, publish_folder
from tests.support import hub_server as hs
from tests.support.hub_env import Hub
from tests.support.hub_fixtures import build_dataset_folder, read_manifest


def _folder(tmp_path: Path, name: str = "out", **kwargs: object) -> Path:
    return build_dataset_folder(tmp_path / name, **kwargs)  # type: ignore[arg-type]


def _since(server: hs.HubServer, start: int) -> list[hs.LoggedRequest]:
    return server.log[start:]


def _rows(folder: Path, split: str) -> list[dict[str, object]]:
    files = read_manifest(folder)["configs"]["pairs"]["splits"][split]["files"]
    return [row for f in files for row in pq.read_table(folder / f).to_pylist()]


# ----------------------------------------------------------------------------- round trip
def test_publish_then_load_dataset_at_tag_reads_exactly_the_folder(
    hub: Hub, datasets_client, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, shards=2)
    result = publish_folder(folder, "alice/tiny", tag="v0.1.0")

    assert result.private is True and result.gated == "manual" and result.commit_oid is not None
    repo = hub.server.repos["alice/tiny"]
    assert repo.tags["v0.1.0"] == result.commit_oid  # the commit oid, not `main`
    expected = {
        ".gitattributes", "README.md", "manifest.json", "recipe.resolved.yaml",
        "pairs/train-00000-of-00002.parquet", "pairs/train-00001-of-00002.parquet",
        "pairs/test-00000-of-00002.parquet", "pairs/test-00001-of-00002.parquet",
        "quarantine/rows.parquet", "filtered/rows.parquet",
    }  # fmt: skip
    assert set(repo.head.files) == expected  # never .work/
    assert hub.server.file_bytes("alice/tiny", "manifest.json") == (folder / "manifest.json").read_bytes()
    head = repo.head
    assert "tiny-pairs" in head.title and "0123456789ab" in head.title and "8 rows" in head.title
    assert "quarantined 1" in head.message

    ds = datasets_client.load_dataset("alice/tiny", "pairs", revision="v0.1.0")  # type: ignore[attr-defined]
    for split in ("train", "test"):
        assert ds[split].to_list() == _rows(folder, split)
    latest = datasets_client.load_dataset("alice/tiny")  # type: ignore[attr-defined]  # main, default config
    for split in ("train", "test"):
        assert latest[split].to_list() == _rows(folder, split)


def test_routes_the_clients_use_are_pinned(hub: Hub, datasets_client, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    publish_folder(folder, "alice/tiny", tag="v1.0.0")
    publish_folder(folder, "alice/tiny", tag="v1.0.0")
    datasets_client.load_dataset("alice/tiny", "pairs", revision="v1.0.0")  # type: ignore[attr-defined]
    # A client upgrade that adds or drops a route fails here instead of drifting silently.
    assert hub.server.routes_hit() == {
        hs.WHOAMI, hs.CREATE_REPO, hs.DATASET_INFO, hs.DATASET_INFO_REV, hs.SETTINGS, hs.TREE,
        hs.VALIDATE_YAML, hs.PREUPLOAD, hs.LFS_BATCH, hs.LFS_PUT, hs.LFS_VERIFY, hs.COMMIT, hs.REFS,
        hs.TAG, hs.RESOLVE_HEAD, hs.RESOLVE_GET,
    }  # fmt: skip


# ----------------------------------------------------------------------------- idempotence, resume, retry
def test_second_publish_makes_no_commit_and_sends_nothing(hub: Hub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    first = publish_folder(folder, "alice/tiny", tag="v0.1.0")
    commits = hub.server.commit_count("alice/tiny")
    start = len(hub.server.log)

    again = publish_folder(folder, "alice/tiny", tag="v0.1.0")

    assert again.commit_oid is None and again.files_uploaded == 0
    assert hub.server.commit_count("alice/tiny") == commits
    sent = {r.route for r in _since(hub.server, start)}
    assert not sent & {hs.COMMIT, hs.PREUPLOAD, hs.LFS_BATCH, hs.LFS_PUT, hs.SETTINGS, hs.TAG}
    assert first.files_uploaded == 7


def test_changed_folder_replaces_stale_shards_in_one_commit(
    hub: Hub, datasets_client, tmp_path: Path
) -> None:
    publish_folder(_folder(tmp_path, "v1", shards=2), "alice/tiny")
    commits = hub.server.commit_count("alice/tiny")
    newer = _folder(tmp_path, "v2", shards=1, tag="-new")

    result = publish_folder(newer, "alice/tiny", tag="v0.2.0")

    assert hub.server.commit_count("alice/tiny") == commits + 1
    files = set(hub.server.repos["alice/tiny"].head.files)
    assert "pairs/train-00001-of-00002.parquet" not in files and "pairs/train-00000-of-00001.parquet" in files
    assert result.files_uploaded == 3  # two new shards and the new manifest; card and side tables unchanged
    ds = datasets_client.load_dataset("alice/tiny", "pairs", revision="v0.2.0")  # type: ignore[attr-defined]
    assert ds["train"].to_list() == _rows(newer, "train")


def test_commit_is_retried_after_5xx_and_stale_parent_412(hub: Hub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    publish_folder(folder, "alice/tiny")  # repo exists; now a second version meets a flaky Hub
    hub.server.inject(hs.COMMIT, 503)
    hub.server.inject(hs.COMMIT, 507)  # any 5xx, not only the common ones
    hub.server.inject(hs.COMMIT, 412)
    start = len(hub.server.log)

    result = publish_folder(_folder(tmp_path, "v2", tag="-b"), "alice/tiny")

    statuses = [r.status for r in _since(hub.server, start) if r.route == hs.COMMIT]
    assert statuses == [503, 507, 412, 200]
    assert hub.server.repos["alice/tiny"].branches["main"] == result.commit_oid
    puts = [r for r in _since(hub.server, start) if r.route == hs.LFS_PUT]
    assert len(puts) == 2  # the two new shards, once each, although the commit was sent three times


def test_settings_call_is_retried_on_429(hub: Hub, tmp_path: Path) -> None:
    hub.server.inject(hs.SETTINGS, 429, retry_after="0")
    result = publish_folder(_folder(tmp_path), "alice/tiny")
    assert result.gated == "manual" and hub.server.repos["alice/tiny"].gated == "manual"


def test_an_http_date_retry_after_is_waited_for(hub: Hub, tmp_path: Path) -> None:
    # the tests' retry policy has no backoff of its own: only the server's date can make it wait
    until = math.ceil(time.time()) + 2
    hub.server.inject(hs.SETTINGS, 429, retry_after=email.utils.formatdate(until, usegmt=True))
    publish_folder(_folder(tmp_path), "alice/tiny")
    throttled, retried = [r for r in hub.server.log if r.route == hs.SETTINGS][:2]
    assert (throttled.status, retried.status) == (429, 200)
    assert retried.received_at >= until  # not before the date the Hub named


def test_server_refuses_a_commit_on_a_stale_parent(hub: Hub) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    api.create_repo("alice/raw", repo_type="dataset", private=True)
    old = api.dataset_info("alice/raw").sha
    api.create_commit(
        "alice/raw", [CommitOperationAdd("a.txt", b"one")], commit_message="a", repo_type="dataset"
    )
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(
            "alice/raw",
            [CommitOperationAdd("b.txt", b"two")],
            commit_message="b",
            repo_type="dataset",
            parent_commit=old,
        )
    assert err.value.response.status_code == 412


def test_interrupted_upload_resumes_without_resending_stored_objects(hub: Hub, tmp_path: Path) -> None:
    folder = _folder(tmp_path, shards=3)
    hub.server.inject(hs.LFS_PUT, 400)  # one object's upload fails: the client does not retry a 400
    with pytest.raises(UserError, match="400"):
        publish_folder(folder, "alice/tiny")
    stored = set(hub.server.repos["alice/tiny"].lfs_oids)
    assert stored and hub.server.commit_count("alice/tiny") == 1  # some objects landed, no commit yet
    start_puts = len(hub.server.lfs_puts)

    result = publish_folder(folder, "alice/tiny")

    resent = hub.server.lfs_puts[start_puts:]
    assert not set(resent) & stored
    assert len(resent) == 8 - len(stored)  # 6 shards + quarantine + filtered, each sent once overall
    assert result.commit_oid is not None and result.files_uploaded == 11


def test_failed_commit_rerun_sends_no_object_again(hub: Hub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    hub.server.inject(hs.COMMIT, 500, times=publisher.RETRY.attempts)
    with pytest.raises(UserError, match="500"):
        publish_folder(folder, "alice/tiny")
    start_puts = len(hub.server.lfs_puts)

    result = publish_folder(folder, "alice/tiny")

    assert hub.server.lfs_puts[start_puts:] == []
    assert result.commit_oid == hub.server.repos["alice/tiny"].branches["main"]


# ----------------------------------------------------------------------------- privacy and gating
def test_private_repo_is_invisible_without_the_owners_token(hub: Hub, tmp_path: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    publish_folder(_folder(tmp_path), "alice/tiny")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).dataset_info("alice/tiny")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=hub.other_token).dataset_info("alice/tiny")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).hf_hub_download("alice/tiny", "manifest.json", repo_type="dataset")
    assert HfApi().dataset_info("alice/tiny").private is True


def test_visibility_is_corrected_when_the_hub_creates_the_repo_public(hub: Hub, tmp_path: Path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    hub.server.ignore_private_on_create = True  # e.g. an org whose default visibility wins
    result = publish_folder(_folder(tmp_path), "safety-lab/tiny")
    assert result.private and hub.server.repos["safety-lab/tiny"].private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).dataset_info("safety-lab/tiny")


def test_harmful_schema_is_gated_with_tag_warning_and_access_form(hub: Hub, tmp_path: Path) -> None:
    publish_folder(_folder(tmp_path), "alice/tiny", gated="auto")
    assert hub.server.repos["alice/tiny"].gated == "auto"
    meta, body = split_card(hub.server.file_bytes("alice/tiny", "README.md").decode())
    assert meta is not None and meta["tags"].count(HARMFUL_TAG) == 1
    assert meta["extra_gated_prompt"] and "checkbox" in meta["extra_gated_fields"].values()
    assert body.startswith(CONTENT_WARNING)


def test_a_manifest_cannot_talk_a_harmful_schema_out_of_gating(hub: Hub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)  # preference_pair: a schema that holds harmful text
    manifest = read_manifest(folder)
    manifest["contains_harmful_text"] = False
    (folder / "manifest.json").write_text(json.dumps(manifest))
    start = len(hub.server.log)
    with pytest.raises(UserError, match="holds harmful text but the manifest says contains_harmful_text"):
        publish_folder(folder, "alice/sneaky")
    assert "alice/sneaky" not in hub.server.repos and _since(hub.server, start) == []


def test_dataset_without_harmful_text_is_not_gated(hub: Hub, tmp_path: Path) -> None:
    publish_folder(_folder(tmp_path, harmful=False), "alice/mild")  # a prompt_response config
    assert hub.server.repos["alice/mild"].gated is False
    meta, body = split_card(hub.server.file_bytes("alice/mild", "README.md").decode())
    assert meta is not None and HARMFUL_TAG not in meta["tags"] and "extra_gated_prompt" not in meta
    assert "Content warning" not in body


def test_public_needs_confirmation_and_goes_public_after_gating(hub: Hub, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    folder = _folder(tmp_path)
    asked: list[str] = []

    def refuse(question: str) -> bool:
        asked.append(question)
        return False

    with pytest.raises(UserError, match="not confirmed"):
        publish_folder(folder, "alice/open", public=True, confirm=refuse)
    assert asked and "alice/open" not in hub.server.repos  # nothing was sent

    result = publish_folder(folder, "alice/open", public=True, confirm=lambda q: True)
    assert result.private is False and result.gated == "manual"
    info = HfApi(token=False).dataset_info("alice/open")
    assert info.private is False and info.gated == "manual"


def test_gating_off_on_harmful_text_needs_public_and_yes(hub: Hub, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    with pytest.raises(UserError, match="--gated off"):
        publish_folder(folder, "alice/tiny", gated="off")
    with pytest.raises(UserError, match="--gated off"):
        publish_folder(folder, "alice/tiny", gated="off", public=True, confirm=lambda q: True)
    result = publish_folder(folder, "alice/tiny", gated="off", public=True, yes=True)
    assert result.gated == "off" and hub.server.repos["alice/tiny"].gated is False
    assert not hub.server.repos["alice/tiny"].private


def test_card_gating_is_added_once_even_when_the_writer_already_did(tmp_path: Path) -> None:
    text = (_folder(tmp_path) / "README.md").read_text()
    once = prepare_card(text, harmful=True, gating="manual")
    assert prepare_card(once, harmful=True, gating="manual") == once
    assert once.count(HARMFUL_TAG) == 1 and once.count(CONTENT_WARNING.splitlines()[0]) == 1
    meta, _ = split_card(once)
    assert meta is not None and yaml.safe_load(yaml.safe_dump(meta)) == meta


# ----------------------------------------------------------------------------- user errors and secrets
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_user_errors_are_one_clear_line(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    folder = _folder(tmp_path)
    cases: list[tuple[str, str]] = []

    def fails(match: str, repo: str = "alice/tiny", where: Path = folder) -> None:
        with pytest.raises(UserError, match=match) as err:
            publish_folder(where, repo)
        cases.append((match, str(err.value)))

    fails("belongs to 'bob'", repo="bob/tiny")
    fails("OWNER/NAME", repo="no-slash")
    broken = _folder(tmp_path, "broken", card_meta={"license": "not-a-licence"})
    fails("not valid: .*license 'not-a-licence'", where=broken)
    missing = _folder(tmp_path, "missing")
    (missing / "pairs/test-00000-of-00001.parquet").unlink()
    fails("not valid", where=missing)
    monkeypatch.setenv("HF_TOKEN", "hf_testTOKEN_wrong" + secrets.token_hex(4))
    fails(r"rejected \(401\)")
    monkeypatch.delenv("HF_TOKEN")
    fails("no Hugging Face token")
    monkeypatch.setenv("HF_TOKEN", hub.token)
    hub.server.inject(hs.COMMIT, 403)
    fails(r"may not write to alice/tiny \(403\)")
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    fails("cannot reach the Hub")

    for _, message in cases:
        assert "\n" not in message and hub.token not in message


def test_token_never_appears_in_output_logs_or_tracebacks(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from huggingface_hub.utils import logging as hf_logging
    from rich.console import Console
    from rich.traceback import Traceback

    hf_logging.set_verbosity_debug()
    caplog.set_level(logging.DEBUG)
    try:
        folder = _folder(tmp_path)
        publish_folder(folder, "alice/tiny", tag="v0.1.0")
        hub.server.inject(hs.COMMIT, 403)
        with pytest.raises(UserError) as err:
            publish_folder(_folder(tmp_path, "v2", tag="-b"), "alice/tiny")
    finally:
        hf_logging.set_verbosity_warning()

    exc = err.value
    # distilabel installs rich tracebacks that show locals: render one the same way.
    console = Console(file=io.StringIO(), width=200)
    console.print(Traceback.from_exception(type(exc), exc, exc.__traceback__, show_locals=True))
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    plain = "".join(traceback.format_exception(exc))
    out = capsys.readouterr()
    assert "403" in str(exc) and "alice/tiny" in rendered
    assert "Request" in caplog.text  # DEBUG logging really was on
    for text in (out.out, out.err, caplog.text, rendered, plain, str(exc)):
        assert hub.token not in text


@pytest.mark.slow
def test_a_real_run_folder_publishes_and_loads_back_in_every_config(
    hub: Hub, datasets_client, c2syn_demo_run: Path, tmp_path: Path
) -> None:
    """The writer's own output (real model, resume state in .work/) round-trips through the Hub."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(c2syn_demo_run, folder)
    assert (folder / ".work").is_dir()
    result = publish_folder(folder, "alice/c2syn-demo", tag="v1.0.0")
    assert result.private and result.gated == "manual"
    files = set(hub.server.repos["alice/c2syn-demo"].head.files)
    assert not any(f.startswith(".work") for f in files)
    manifest = read_manifest(folder)
    for config in ("pairs", "pairs_conversational", "groups"):
        ds = datasets_client.load_dataset("alice/c2syn-demo", config, revision="v1.0.0", split="train")  # type: ignore[attr-defined]
        assert len(ds) == manifest["configs"][config]["splits"]["train"]["num_rows"]
        local = pq.read_table(folder / config).to_pylist()
        assert ds.to_list() == local
