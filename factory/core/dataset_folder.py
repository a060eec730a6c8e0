"""The dataset folder's manifest, read in one place (check, inspect, publish, train, resume).

The folder contract is docs/design.md, "The dataset folder": `manifest.json` names each config's
record schema, splits and files, and counts where every input row went.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from factory.core.config_files import format_validation_error
from factory.core.errors import UserError
from schemas.manifest import DatasetManifest

MANIFEST_FILE = "manifest.json"
WORK_DIR = ".work"  # a run's resume state (request cache, distilabel's cache, logs); never published


def read_manifest(folder: Path) -> DatasetManifest:
    """`folder`/manifest.json, validated; a folder without one, or a broken one, is one UserError line."""
    if not (folder / MANIFEST_FILE).is_file():
        raise UserError(f"not a safepref dataset folder (no {MANIFEST_FILE})", where=str(folder))
    return read_manifest_file(folder / MANIFEST_FILE)


def read_manifest_file(path: Path, *, where: str | None = None) -> DatasetManifest:
    """A manifest file (one fetched from the Hub too); `where` names it in errors (default: its path)."""
    where = where or str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), where=where) from None
    except ValueError as exc:  # not JSON, or not UTF-8
        raise UserError(f"invalid manifest: not JSON ({str(exc).splitlines()[0]})", where=where) from None
    try:
        return DatasetManifest.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"invalid manifest: {format_validation_error(exc)}", where=where) from None


def previous_manifest(folder: Path) -> DatasetManifest | None:
    """The manifest an earlier run left in `folder`, or None when there is none or it is unusable (then
    that run did not finish: a fresh run replaces it)."""
    try:
        return read_manifest(folder)
    except UserError:
        return None
