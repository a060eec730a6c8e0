"""A recipe run, read top to bottom like a recipe: set up, read the data, run the pipeline, write the
folder. Each line is a call into the module that does that job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from factory.backends.request_cache import REQUEST_CACHE_FILE
from factory.core.dataset_folder import WORK_DIR
from factory.core.hashing import input_hashes
from factory.core.memory import frozen_gc, release_freed_memory
from factory.core.progress import report_total
from factory.core.rows import ROW_ID
from factory.core.storage_errors import storage_errors_reported
from factory.engine.accounting import RunAccounts, raise_if_no_output
from factory.engine.folder_lock import hold_output_folder
from factory.engine.intake import read_rows
from factory.engine.lineage import Lineage
from factory.engine.output import export_context, run_manifest, write_folder_files
from factory.engine.pipeline import RunServers, build_pipeline, require_source_columns, run_pipeline
from factory.engine.preflight import preflight
from factory.engine.processes import resume_hint_on_interrupt, run_processes
from factory.engine.recipe import LoadedRecipe
from factory.engine.resume import may_reuse, reuse_or_restart
from schemas.manifest import DatasetManifest


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    manifest: DatasetManifest


def run_recipe(
    loaded: LoadedRecipe,
    out_dir: Path,
    *,
    allow_import_steps: bool = False,
    executor: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Run the recipe into `out_dir`, as the only run writing there (factory.engine.folder_lock), with quiet
    workers bound to this process and Ctrl-C raising RunInterrupted (factory.engine.processes), and a full
    or read-only disk reported in one line (factory.core.storage_errors)."""
    work_dir = out_dir / WORK_DIR
    with (
        storage_errors_reported(out_dir),
        hold_output_folder(out_dir, work_dir),
        run_processes(work_dir),
        resume_hint_on_interrupt(out_dir, work_dir / REQUEST_CACHE_FILE),
    ):
        return _run_recipe(
            loaded, out_dir, allow_import_steps=allow_import_steps, executor=executor, ray_address=ray_address
        )


def _run_recipe(
    loaded: LoadedRecipe,
    out_dir: Path,
    *,
    allow_import_steps: bool,
    executor: Literal["local", "ray"],
    ray_address: str | None,
) -> RunResult:
    """Re-running the same recipe into the same folder reuses the finished run (distilabel's cache);
    after an interruption or an edit, unchanged LLM requests come from the request cache."""
    from factory.export.writer import write_records

    started, recipe, work_dir = time.perf_counter(), loaded.recipe, out_dir / WORK_DIR
    # set up: the model servers start now (unless a finished run may be reused) and load meanwhile
    preflight(loaded)
    with RunServers(loaded, work_dir) as servers:
        if not may_reuse(out_dir, loaded.hash):
            servers.start()
        rows, label = read_rows(loaded, allow_import_steps=allow_import_steps)  # bad rows quarantined here
        report_total(len(rows))
        lineage = Lineage(str(r[ROW_ID]) for r in rows)
        out_dir.mkdir(parents=True, exist_ok=True)
        inputs = input_hashes(recipe, loaded.base_dir, rows)
        reuse = reuse_or_restart(out_dir, loaded.hash, inputs)
        if not reuse.finished:
            servers.start()
        # data: the source step reads the rows from a file in its own process; rows kept here would be
        # copied into every step's process when distilabel forks them
        pipeline, steps = build_pipeline(loaded, rows, work_dir, allow_import_steps=allow_import_steps)
        require_source_columns(loaded, rows, label, steps[0])
        del rows
        release_freed_memory()
        # run
        dataset = run_pipeline(
            loaded,
            pipeline,
            work_dir,
            servers.started,
            reuse=reuse.finished,
            executor=executor,
            ray_address=ray_address,
        )
        servers.begin_stop()
        # write: every row ends as output, filtered or quarantined, and the manifest counts each
        accounts = RunAccounts(loaded, steps, lineage, dataset)
        with frozen_gc(collect=False):  # the export makes no reference cycles: collections found nothing
            written = write_records(out_dir, accounts.rows(), recipe.outputs, export_context(loaded))
        raise_if_no_output(written, out_dir)
        manifest = run_manifest(
            loaded,
            source_label=label,
            configs=written.configs,
            counts=accounts.counts(written),
            stages=accounts.tally.stats,
            inputs=inputs,
            reuse=reuse,
            wall_time_s=round(time.perf_counter() - started, 3),
        )
        write_folder_files(out_dir, recipe, manifest)
    return RunResult(out_dir=out_dir, manifest=manifest)
