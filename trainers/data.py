"""Dataset intake: read a safepref dataset folder (or Hub repo) and check it holds records the algorithm
trains on (each algorithm shapes them into its trainer's rows).

The folder contract is docs/design.md "The dataset folder": `manifest.json` names each config's record
schema; rows live in the parquet files the manifest lists. Every row is re-validated against its schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from factory.core.config_files import format_validation_error
from factory.core.dataset_folder import read_manifest, read_manifest_file
from factory.core.errors import UserError
from schemas.columns import is_bookkeeping
from schemas.manifest import DatasetManifest
from schemas.records import RECORD_SCHEMAS
from trainers.algorithms import ALGORITHMS


@dataclass
class TrainingDataset:
    """Validated records of one config/split, with what the model card needs to say about them."""

    source: str
    revision: str | None
    config: str
    schema: str
    manifest: DatasetManifest
    records: list[BaseModel] = field(repr=False)

    def card_fields(self) -> dict[str, Any]:
        return {
            "dataset": self.source,
            "dataset_revision": self.revision,
            "dataset_config": self.config,
            "record_schema": self.schema,
            "recipe_name": self.manifest.recipe_name,
            "recipe_version": self.manifest.recipe_version,
            "recipe_hash": self.manifest.recipe_hash,
            "dataset_created_at": self.manifest.created_at,
        }


def split_revision(spec: str) -> tuple[str, str | None]:
    """`owner/name@rev` -> (`owner/name`, `rev`); a spec without `@` has no revision."""
    name, sep, revision = spec.partition("@")
    return name, (revision or None) if sep else None


def load_training_dataset(
    spec: str, algorithm: str, *, config: str | None = None, split: str = "train"
) -> TrainingDataset:
    """Read and validate the dataset at `spec` (folder, or Hub repo id with optional `@revision`)."""
    path = Path(spec)
    if path.is_dir():
        manifest = read_manifest(path)
        name, info = _pick_config(manifest, config, algorithm, where=str(path))
        split_info = info.splits.get(split)
        if split_info is None:
            raise UserError(f"{path}: config {name!r} has no split {split!r} (has {sorted(info.splits)})")
        rows = _read_parquet_rows([path / f for f in split_info.files], where=f"{path}/{name}")
        records = _validate(rows, info.schema_name, where=f"{path}/{name}/{split}")
        return TrainingDataset(str(path), None, name, info.schema_name, manifest, records)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return _load_from_hub(spec, algorithm, config=config, split=split)
    raise UserError(
        f"dataset {spec!r} not found: expected a dataset folder or a Hub repo id (owner/name[@rev])"
    )


def _load_from_hub(spec: str, algorithm: str, *, config: str | None, split: str) -> TrainingDataset:
    """The published dataset at `owner/name[@rev]`, read at the commit `rev` resolves to now, so the
    manifest, the rows and the model card all name the same commit."""
    import datasets
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    from factory.core.sources import resolve_dataset_revision

    repo, ref = split_revision(spec)
    revision = resolve_dataset_revision(repo, ref) or ref
    try:
        manifest_file = hf_hub_download(repo, "manifest.json", repo_type="dataset", revision=revision)
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise UserError(
            f"dataset {spec}: no such folder, and manifest.json could not be fetched from the Hub "
            f"({exc.__class__.__name__})"
        ) from None
    manifest = read_manifest_file(Path(manifest_file), where=f"{spec}/manifest.json")
    name, info = _pick_config(manifest, config, algorithm, where=spec)
    ds = datasets.load_dataset(repo, name, split=split, revision=revision)
    records = _validate(ds, info.schema_name, where=f"{spec}/{name}/{split}")
    return TrainingDataset(repo, revision, name, info.schema_name, manifest, records)


def _pick_config(
    manifest: DatasetManifest, config: str | None, algorithm: str, *, where: str
) -> tuple[str, Any]:
    accepted = ALGORITHMS[algorithm].record_schemas
    if config is not None:
        if config not in manifest.configs:
            raise UserError(f"{where}: no config {config!r} (has {sorted(manifest.configs)})")
        name = config
    else:
        # The default config first, then any config whose schema this algorithm reads.
        ordered = sorted(manifest.configs.items(), key=lambda kv: not kv[1].default)
        fitting = [n for n, c in ordered if c.schema_name in accepted]
        name = fitting[0] if fitting else ordered[0][0]
    info = manifest.configs[name]
    if info.schema_name not in accepted:
        raise UserError(
            f"{where}: config {name!r} holds {info.schema_name!r} records (recipe {manifest.recipe_name}); "
            f"algorithm {algorithm!r} needs one of {', '.join(accepted)}"
        )
    return name, info


def _read_parquet_rows(files: list[Path], *, where: str) -> list[dict[str, Any]]:
    from factory.core.parquet_files import read_parquet

    rows: list[dict[str, Any]] = []
    for file in files:
        if not file.is_file():
            raise UserError(f"{where}: data file {file} listed in the manifest is missing")
        rows.extend(read_parquet(file).to_pylist())
    return rows


def _validate(rows: Iterable[dict[str, Any]], schema: str, *, where: str) -> list[BaseModel]:
    model = RECORD_SCHEMAS[schema]
    out: list[BaseModel] = []
    for i, row in enumerate(rows):
        # Bookkeeping columns (`_sp_*`) are the engine's, not part of the record.
        record = {k: v for k, v in row.items() if not is_bookkeeping(k)}
        try:
            out.append(model.model_validate(record))
        except ValidationError as exc:
            raise UserError(f"{where} row {i}: {format_validation_error(exc)}") from None
    if not out:
        raise UserError(f"{where}: no rows")
    return out
