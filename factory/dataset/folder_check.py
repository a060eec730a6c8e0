"""`safepref check DIR` (the dataset folder check): re-validate a folder against its manifest and record schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from factory.core.config_files import format_validation_error
from factory.core.dataset_folder import read_manifest
from factory.core.errors import UserError
from factory.core.parquet_files import iter_parquet_batches, open_parquet
from schemas.manifest import DatasetManifest
from schemas.registry import HARMFUL_TEXT_SCHEMAS, RECORD_SCHEMAS

MAX_PROBLEMS = 50


@dataclass
class CheckReport:
    folder: Path
    rows_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... more problems not shown")


def check_folder(folder: Path) -> CheckReport:
    """Every row of every config validates against its schema; files and counts match the manifest."""
    report = CheckReport(folder)
    try:
        manifest = read_manifest(folder)
    except UserError as exc:
        report.add(str(exc))
        return report
    for config, info in manifest.configs.items():
        model = RECORD_SCHEMAS.get(info.schema_name)
        if model is None:
            report.add(f"{config}: unknown schema {info.schema_name!r}")
            continue
        if info.schema_name in HARMFUL_TEXT_SCHEMAS and not manifest.contains_harmful_text:
            report.add(
                f"{config}: schema {info.schema_name} holds harmful text but the manifest says"
                " contains_harmful_text: false"
            )
        for split, split_info in info.splits.items():
            listed = sorted(split_info.files)
            on_disk = sorted(str(p.relative_to(folder)) for p in (folder / config).glob(f"{split}-*.parquet"))
            if listed != on_disk:
                report.add(f"{config}/{split}: files {on_disk} differ from the manifest's {listed}")
                continue
            n = 0
            for rel in listed:
                try:
                    for batch in iter_parquet_batches(folder / rel, batch_size=10_000):
                        for i, row in enumerate(batch.to_pylist()):
                            try:
                                model.model_validate(row)
                            except ValidationError as exc:
                                report.add(f"{rel} row {n + i}: {format_validation_error(exc)}")
                        n += batch.num_rows
                except UserError as exc:  # a damaged shard is a problem of this folder, not a crash
                    report.add(str(exc))
            report.rows_checked += n
            if n != split_info.num_rows:
                report.add(f"{config}/{split}: {n} rows on disk, manifest says {split_info.num_rows}")
    _check_accounting(folder, manifest, report)
    _check_card(folder, report)
    return report


def _check_accounting(folder: Path, manifest: DatasetManifest, report: CheckReport) -> None:
    counts = manifest.counts
    for name, expected in (
        ("filtered", sum(counts.filtered.values())),
        ("quarantine", sum(counts.quarantined.values())),
    ):
        path = folder / name / "rows.parquet"
        if not path.is_file():
            report.add(f"{name}/rows.parquet is missing")
            continue
        try:
            n = open_parquet(path).metadata.num_rows
        except UserError as exc:
            report.add(str(exc))
            continue
        if n != expected:
            report.add(f"{name}/rows.parquet has {n} rows, manifest counts {expected}")


def _check_card(folder: Path, report: CheckReport) -> None:
    if not (folder / "README.md").is_file():
        report.add("README.md (dataset card) is missing")
        return
    from factory.dataset.card_check import check_card

    for problem in check_card(folder):
        report.add(problem)
