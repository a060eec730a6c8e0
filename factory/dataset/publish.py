"""Publish a Hub-ready dataset folder: private by default, gated when it holds harmful text, one commit.

Order of work, so nothing is ever visible before it is gated: create the repo private, put visibility
and gating right, commit only the files that differ from the remote head (with the parent commit
pinned, re-planned on 409/412/429/5xx), tag the commit oid, go public last, then verify the settings.
The token is never passed around: huggingface_hub reads it from HF_TOKEN or the login cache per call.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from factory import __version__
from factory.core.dataset_folder import read_manifest
from factory.core.errors import UserError
from factory.core.retry import RetryPolicy, status_of, with_retry
from factory.dataset.card import CONTENT_WARNING
from factory.dataset.card_check import HARMFUL_TAG, check_card_text, split_card
from schemas.manifest import DatasetManifest
from schemas.registry import HARMFUL_TEXT_SCHEMAS

if TYPE_CHECKING:
    from huggingface_hub import HfApi

Gating = Literal["auto", "manual", "off"]

RETRY = RetryPolicy()  # tests shorten the waits by replacing this
GATED_PROMPT = (
    "This dataset contains harmful model-generated text kept as negative examples for safety research. "
    "Access is granted for safety training and evaluation only."
)
GATED_FIELDS = {
    "Affiliation": "text",
    "Intended use": "text",
    "I will use this dataset only for safety research and will not use it to generate harmful content": "checkbox",
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
_TAG = re.compile(r"^v\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.\-]+)?$")
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9_]{6,}")
# Remote files under these folders that the folder no longer has are deleted (stale shards would be read).
_OWNED_DIRS = ("quarantine", "filtered")


class PublishError(RuntimeError):
    """An unexpected failure inside the Hub client, re-raised without its frames (they hold request headers)."""


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    commit_oid: str | None  # None: the Hub already held exactly this folder
    tag: str | None
    private: bool
    gated: Gating
    files_uploaded: int
    url: str


def publish_folder(
    folder: Path,
    repo_id: str,
    *,
    public: bool = False,
    yes: bool = False,
    gated: Gating | None = None,
    tag: str | None = None,
    confirm: Callable[[str], bool] | None = None,
) -> PublishResult:
    """Publish `folder` (from `safepref run`) to the dataset repo `repo_id`; see docs/publishing.md."""
    folder = Path(folder)
    if not _REPO_ID.match(repo_id):
        raise UserError(f"--repo {repo_id!r} must look like OWNER/NAME")
    if tag is not None and not _TAG.match(tag):
        raise UserError(f"--tag {tag!r} must look like vX.Y.Z")
    if gated not in (None, "auto", "manual", "off"):
        raise UserError(f"--gated {gated!r} must be auto, manual or off")
    manifest = _validate_folder(folder)
    # the flag, or any config whose schema holds harmful text: a manifest cannot talk gating away
    harmful = manifest.contains_harmful_text or any(
        c.schema_name in HARMFUL_TEXT_SCHEMAS for c in manifest.configs.values()
    )
    gating: Gating = gated or ("manual" if harmful else "off")
    if gating == "off" and harmful and not (public and yes):
        raise UserError(f"{folder}: holds harmful text; --gated off needs --public and --yes")
    if public and not yes:
        question = f"Make {repo_id} public on the Hub (gating: {gating})?"
        if confirm is None or not confirm(question):
            raise UserError(
                f"publishing {repo_id} publicly was not confirmed (pass --yes to skip the question)"
            )

    card = prepare_card((folder / "README.md").read_text(encoding="utf-8"), harmful=harmful, gating=gating)
    problems = check_card_text(card, manifest.model_dump(mode="json", by_alias=True), folder)
    if problems:
        raise UserError(f"{problems[0]} (card as it would be published)")
    files = _files_to_publish(folder, manifest, card.encode())

    from huggingface_hub import HfApi, get_token

    if get_token() is None:
        raise UserError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (never pass it as an argument)"
        )
    api = HfApi()
    _check_namespace(api, repo_id)
    with _hub_call("creating", repo_id, api):
        api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)

    want_gated: str | bool = False if gating == "off" else gating
    with _hub_call("reading", repo_id, api):
        info = api.dataset_info(repo_id)
    early: dict[str, Any] = {}
    if info.gated != want_gated:
        early["gated"] = want_gated
    if not public and info.private is not True:
        early["private"] = True  # before any data lands
    _update_settings(api, repo_id, early)

    commit_oid, uploaded, head = _commit(api, repo_id, files, manifest)
    if tag is not None:
        _tag(api, repo_id, tag, commit_oid or head)
    if public:
        _update_settings(api, repo_id, {"private": False})  # last: gating is already in place
    _verify_settings(api, repo_id, private=not public, gated=want_gated)
    return PublishResult(
        repo_id=repo_id,
        commit_oid=commit_oid,
        tag=tag,
        private=not public,
        gated=gating,
        files_uploaded=uploaded,
        url=f"{api.endpoint}/datasets/{repo_id}",
    )


# --------------------------------------------------------------------------- folder and card
def _validate_folder(folder: Path) -> DatasetManifest:
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (expected the output of `safepref run`)")
    for name in ("README.md", "manifest.json", "recipe.resolved.yaml"):
        if not (folder / name).is_file():
            raise UserError(f"{folder / name}: missing; is this a `safepref run` folder?")
    manifest = read_manifest(folder)
    from factory.dataset.folder_check import check_folder

    problems = check_folder(folder).problems  # `safepref check`'s verdict
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{folder}: not valid: {problems[0]}{more}; run `safepref check {folder}`")
    return manifest


def prepare_card(text: str, *, harmful: bool, gating: Gating) -> str:
    """The card as published: the harmful-text tag and warning, and the access form when gated; never twice."""
    meta, body = split_card(text)
    if meta is None:
        raise UserError("README.md: no YAML header")
    changed = False
    if harmful:
        tags = list(meta.get("tags") or [])
        if HARMFUL_TAG not in tags:
            meta["tags"] = [*tags, HARMFUL_TAG]
            changed = True
    if gating != "off":
        if "extra_gated_prompt" not in meta:
            meta["extra_gated_prompt"] = GATED_PROMPT
            changed = True
        if "extra_gated_fields" not in meta:
            meta["extra_gated_fields"] = dict(GATED_FIELDS)
            changed = True
    if harmful and "content warning" not in body[:1000].lower():
        body = CONTENT_WARNING + "\n\n" + body
        changed = True
    if not changed:
        return text
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n{body}"


def _files_to_publish(folder: Path, manifest: DatasetManifest, card: bytes) -> dict[str, Path | bytes]:
    """path in repo -> local file (or bytes for the prepared card). Never `.work/`."""
    files: dict[str, Path | bytes] = {"README.md": card}
    for name in ("manifest.json", "recipe.resolved.yaml"):
        files[name] = folder / name
    for config in manifest.configs.values():
        for split in config.splits.values():
            for rel in split.files:
                files[rel] = folder / rel
    for sub in _OWNED_DIRS:
        for path in sorted((folder / sub).rglob("*")) if (folder / sub).is_dir() else []:
            if path.is_file():
                files[path.relative_to(folder).as_posix()] = path
    return files


# --------------------------------------------------------------------------- Hub calls
@contextmanager
def _hub_call(action: str, repo_id: str, api: HfApi) -> Iterator[None]:
    """Turn client errors into one-line UserErrors naming status and repo; no request data, no chained frames."""
    failure: BaseException | None = None
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        failure = _translate(exc, action, repo_id, api.endpoint)
    if failure is not None:
        raise failure from None


def _translate(exc: Exception, action: str, repo_id: str, endpoint: str) -> BaseException:
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, RepositoryNotFoundError

    exc = _root_cause(exc)
    status = status_of(exc)
    where = f"{action} {repo_id}"
    if isinstance(exc, LocalTokenNotFoundError):
        return UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return UserError("Hugging Face offline mode is on (HF_HUB_OFFLINE): unset it to publish")
    if _is_transport(exc):
        return UserError(
            f"cannot reach the Hub at {endpoint} while {where} ({type(exc).__name__}); is the network up?"
        )
    if isinstance(exc, HfHubHTTPError) and status is not None:
        server_lines = (getattr(exc, "server_message", None) or "").splitlines()
        server = _scrub(server_lines[0]) if server_lines else ""
        detail = f": {server}" if server else ""
        if status == 401 and not isinstance(exc, RepositoryNotFoundError):
            return UserError(
                f"the Hugging Face token was rejected (401) while {where}; check HF_TOKEN or `hf auth login`"
            )
        if status == 403:
            return UserError(f"the token may not write to {repo_id} (403) while {action} it{detail}")
        if isinstance(exc, RepositoryNotFoundError):
            return UserError(f"{repo_id} not found or not visible to this token ({status}) while {action} it")
        return UserError(f"the Hub answered {status} while {where}{detail}")
    return PublishError(f"unexpected error while {where}: {type(exc).__name__}: {_scrub(str(exc))[:300]}")


def _root_cause(exc: Exception) -> Exception:
    """The HTTP or transport error behind a wrapper (the client wraps LFS upload failures in RuntimeError)."""
    seen = exc
    while (
        status_of(seen) is None
        and not _is_transport(seen)
        and isinstance(seen.__cause__ or seen.__context__, Exception)
    ):
        nxt = seen.__cause__ or seen.__context__
        assert isinstance(nxt, Exception)
        seen = nxt
    return seen if status_of(seen) is not None or _is_transport(seen) else exc


def _is_transport(exc: BaseException) -> bool:
    import httpx
    import httpx2

    return isinstance(exc, (httpx2.TransportError, httpx.TransportError, ConnectionError))


def _scrub(text: str) -> str:
    from huggingface_hub import get_token

    secret = get_token()
    if secret:
        text = text.replace(secret, "***")
    return _TOKEN_LIKE.sub("hf_***", text)


def _check_namespace(api: HfApi, repo_id: str) -> None:
    with _hub_call("checking the token for", repo_id, api):
        me = api.whoami()
    names = {me.get("name")} | {org.get("name") for org in me.get("orgs", [])}
    owner = repo_id.split("/", 1)[0]
    if owner not in names:
        raise UserError(
            f"{repo_id} belongs to {owner!r}; this token is {me.get('name')!r} and cannot publish there"
        )


def _update_settings(api: HfApi, repo_id: str, settings: dict[str, Any]) -> None:
    if not settings:
        return
    with _hub_call("updating settings of", repo_id, api):
        with_retry(
            lambda: api.update_repo_settings(repo_id, repo_type="dataset", **settings),
            what=f"settings of {repo_id}",
            policy=RETRY,
        )


def _verify_settings(api: HfApi, repo_id: str, *, private: bool, gated: str | bool) -> None:
    """Read the settings back; fix them once if the Hub holds something else, then insist."""
    for attempt in range(2):
        with _hub_call("verifying", repo_id, api):
            info = api.dataset_info(repo_id)
        wrong: dict[str, Any] = {}
        if info.private is not private:
            wrong["private"] = private
        if info.gated != gated:
            wrong["gated"] = gated
        if not wrong:
            return
        if attempt == 1:
            raise UserError(
                f"{repo_id}: the Hub still reports {wrong} set differently after publishing; check its settings page"
            )
        _update_settings(api, repo_id, wrong)


def _sha256(data: Path | bytes) -> str:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with data.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_oid(data: Path | bytes) -> str:
    content = data if isinstance(data, bytes) else data.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _plan(
    api: HfApi, repo_id: str, head: str, files: dict[str, Path | bytes], owned: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """(paths to add, paths to delete) against the remote tree at `head`: compare sha256 (LFS) or blob ids."""
    from huggingface_hub.hf_api import RepoFile

    remote = {
        f.path: f
        for f in api.list_repo_tree(repo_id, recursive=True, revision=head, repo_type="dataset")
        if isinstance(f, RepoFile)
    }
    adds = []
    for path, data in files.items():
        entry = remote.get(path)
        if entry is None:
            adds.append(path)
        elif entry.lfs is not None:
            if entry.lfs.sha256 != _sha256(data):
                adds.append(path)
        elif entry.blob_id != _git_blob_oid(data):
            adds.append(path)
    deletes = sorted(p for p in remote if p not in files and p.split("/", 1)[0] in owned and "/" in p)
    return adds, deletes


def _commit(
    api: HfApi, repo_id: str, files: dict[str, Path | bytes], manifest: DatasetManifest
) -> tuple[str | None, int, str]:
    """One commit of what changed, parent pinned; (commit oid or None, files sent, head after)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    owned = (*manifest.configs, *_OWNED_DIRS)
    summary, description = commit_message(manifest)
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        head = api.dataset_info(repo_id).sha
        assert head is not None
        adds, deletes = _plan(api, repo_id, head, files, owned)
        outcome.update(oid=None, uploaded=0, head=head)
        if not adds and not deletes:
            return
        ops: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=files[p]) for p in adds]
        ops += [CommitOperationDelete(path_in_repo=p) for p in deletes]
        info = api.create_commit(
            repo_id,
            ops,
            commit_message=summary,
            commit_description=description,
            repo_type="dataset",
            parent_commit=head,
        )
        outcome.update(oid=info.oid, uploaded=len(adds), head=info.oid)

    with _hub_call("committing to", repo_id, api):
        with_retry(attempt, what=f"commit to {repo_id}", policy=RETRY)
    return outcome["oid"], outcome["uploaded"], outcome["head"]


def commit_message(manifest: DatasetManifest) -> tuple[str, str]:
    """A one-line summary (versions, recipe hash, rows) and a description with the full accounting."""
    counts = manifest.counts
    summary = (
        f"safepref {manifest.safepref_version}: {manifest.recipe_name} {manifest.recipe_version} "
        f"(recipe {manifest.recipe_hash[:12]}), {counts.output} rows"
    )
    lines = [f"Published with safepref {__version__}.", ""]
    for name, config in manifest.configs.items():
        splits = ", ".join(f"{s} {i.num_rows}" for s, i in config.splits.items())
        lines.append(f"- config {name} ({config.schema_name}): {splits}")
    lines.append(
        f"- input {counts.input}, output {counts.output}, filtered {sum(counts.filtered.values())}, "
        f"quarantined {sum(counts.quarantined.values())}"
    )
    lines.append(f"- recipe hash {manifest.recipe_hash}, seed {manifest.seed}, created {manifest.created_at}")
    return summary, "\n".join(lines)


def _tag(api: HfApi, repo_id: str, tag: str, oid: str) -> None:
    with _hub_call("tagging", repo_id, api):
        existing = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}
        if tag in existing:
            if existing[tag] != oid:
                raise UserError(
                    f"{repo_id}: tag {tag} already points to {existing[tag][:12]}, not {oid[:12]}; pick a new tag"
                )
            return
        api.create_tag(
            repo_id, tag=tag, revision=oid, tag_message=f"safepref publish {tag}", repo_type="dataset"
        )
