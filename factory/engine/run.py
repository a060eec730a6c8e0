"""Turns a validated recipe into a distilabel pipeline, runs it, accounts for every row, writes the folder."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from factory import __version__
from factory.backends.fail_fast import ENV_VAR as STOP_FILE_ENV
from factory.backends.fail_fast import raise_if_stopped, stop_file
from factory.backends.managed_server import ENV_VAR as SERVERS_ENV
from factory.backends.managed_server import StartedServers, client_spec, recipe_servers
from factory.backends.request_cache import ENV_VAR as REQUEST_CACHE_ENV
from factory.backends.request_cache import REQUEST_CACHE_FILE, RequestCache
from factory.backends.request_window import llm_stage_batch_size
from factory.core.errors import RunFailed, UserError
from factory.core.hashing import input_hashes
from factory.core.memory import release_freed_memory
from factory.core.models import model_id, model_revision, stage_decodings
from factory.core.progress import ENV_VAR as PROGRESS_ENV
from factory.core.progress import report_total
from factory.core.rows import EXPANSION_SEP, RAW, REASON, ROW_ID, STAGE, STATUS, USAGE, read_usage
from factory.core.sources import SOURCE_STAGE
from factory.core.storage_errors import storage_errors_reported
from factory.engine.folder_lock import hold_output_folder
from factory.engine.intake import missing_column, read_rows
from factory.engine.preflight import preflight
from factory.engine.processes import resume_hint_on_interrupt, run_processes
from factory.engine.recipe import LoadedRecipe
from factory.export.base import ExportContext
from factory.steps.registry import resolve_step_class
from schemas.manifest import DatasetManifest, GeneratorInfo, RowCounts, StageStats
from schemas.registry import HARMFUL_TEXT_SCHEMAS

if TYPE_CHECKING:
    from factory.core.distilabel_compat import Pipeline

WORK_DIR = ".work"


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    manifest: DatasetManifest


def build_pipeline(
    loaded: LoadedRecipe, rows: list[dict[str, Any]], work_dir: Path, *, allow_import_steps: bool
) -> tuple[Pipeline, list[Any]]:
    from factory.core.distilabel_compat import Pipeline
    from factory.engine.source_step import LoadRowsFile, write_rows
    from factory.steps.base import SafeprefStep

    recipe = loaded.recipe
    classes = [resolve_step_class(s.step, allow_import=allow_import_steps) for s in recipe.stages]
    source_file, batch_size = work_dir / "source.pickle", recipe.stages[0].batch_size
    write_rows(source_file, rows, batch_size)  # the caller can let go of `rows` now
    with Pipeline(name=f"safepref-{recipe.name}", cache_dir=work_dir / "distilabel") as pipeline:
        previous: Any = LoadRowsFile(
            name="source",
            path=str(source_file.resolve()),
            columns=list(rows[0] if rows else []),
            batch_size=batch_size,
        )
        steps = []
        for stage, cls in zip(recipe.stages, classes, strict=True):
            kwargs: dict[str, Any] = {"name": stage.name, "input_batch_size": stage.batch_size}
            if issubclass(cls, SafeprefStep):
                spec = recipe.backends[stage.backend] if stage.backend else None
                if spec is not None:
                    kwargs["input_batch_size"] = llm_stage_batch_size(stage.batch_size, client_spec(spec))
                kwargs.update(
                    stage=stage.name,
                    params=stage.params,
                    seed=recipe.seed,
                    template_dir=str(loaded.base_dir.resolve()),
                    backend_spec=spec.model_dump(mode="json") if spec is not None else None,
                    max_quarantine_share=recipe.max_quarantine_share,
                    quarantine_min_rows=recipe.quarantine_min_rows,
                )
            else:
                kwargs.update(stage.params)
            step = cls(**kwargs)
            previous >> step
            previous = step
            steps.append(step)
    return pipeline, steps


def _check_source_columns(
    loaded: LoadedRecipe, rows: list[dict[str, Any]], label: str, first_step: Any
) -> None:
    if not rows:
        raise UserError("the source has no rows", where=label)
    needed = [c for c in first_step.inputs if not c.startswith("_sp_")]
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise missing_column(missing[0], loaded.recipe.stages[0].name, label)


def _root_id(row_id: str, sources: dict[str, int]) -> str:
    while row_id not in sources and EXPANSION_SEP in row_id:
        row_id = row_id.rsplit(EXPANSION_SEP, 1)[0]
    return row_id


def _account_expansions(final_ids: list[str], sources: dict[str, int]) -> tuple[int, int]:
    """(created, expanded): rows made by expanding steps and the parents they replaced."""
    final = set(final_ids)
    if len(final) != len(final_ids):
        raise RuntimeError("a row id appears twice in the pipeline's output")
    created: set[str] = set()
    for rid in final:
        while rid not in sources and EXPANSION_SEP in rid:
            created.add(rid)
            rid = rid.rsplit(EXPANSION_SEP, 1)[0]
        if rid not in sources:
            raise RuntimeError(f"row {rid!r} has no source row")
    parents = {c.rsplit(EXPANSION_SEP, 1)[0] for c in created}
    missing = [rid for rid in sources if rid not in final and rid not in parents]
    if missing:
        raise RuntimeError(f"{len(missing)} rows vanished inside the pipeline (first: {missing[0]})")
    return len(created), len(parents)


def _ordered(dataset: Any, ids: list[str], sources: dict[str, int]) -> Iterator[dict[str, Any]]:
    """Stream the pipeline's rows in source order (distilabel keeps it; re-order lazily if not)."""
    keys = [(sources.get(_root_id(rid, sources), -1), rid) for rid in ids]
    if any(b < a for a, b in zip(keys, keys[1:], strict=False)):
        dataset = dataset.select(sorted(range(len(keys)), key=keys.__getitem__))
    for batch in dataset.iter(batch_size=1000):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns), strict=True):
            yield dict(zip(columns, values, strict=True))


def _finalise(row: dict[str, Any], steps: list[Any]) -> dict[str, Any]:
    """Quarantine a row that a crashed step emptied (distilabel keeps a failed batch's input columns
    and sets its output columns to None). The crashed step is the first whose own columns are None;
    `_sp_status` is every safepref step's output, so it only decides when no own column does."""
    if row.get(STATUS) in ("filtered", "quarantined"):
        return row
    crashed = next(
        (
            s
            for s in steps
            if any(row.get(c) is None for c in s.outputs if c not in _OPTIONAL and c != STATUS)
        ),
        None,
    )
    if crashed is None and row.get(STATUS) is None:  # only bookkeeping was emptied
        crashed = next(
            (s for s in steps if not [c for c in s.outputs if c not in _OPTIONAL and c != STATUS]), steps[-1]
        )
    if crashed is not None:
        row[STATUS], row[STAGE] = "quarantined", crashed.name
        row[REASON] = "step failed: distilabel replaced its outputs with None (see the run log)"
    return row


_OPTIONAL = frozenset({STAGE, REASON, RAW, USAGE})  # bookkeeping that is legitimately None on ok rows


class StageTally:
    """Per-stage counts, derived from where each row ended (a row passed every stage before its last).

    Rows made by an expanding stage carry their parent's id as a prefix: before that stage they are
    counted as their parent, once.
    """

    def __init__(self, loaded: LoadedRecipe, steps: list[Any]) -> None:
        self.names = [s.name for s in loaded.recipe.stages]
        self.position = {n: i for i, n in enumerate(self.names)}
        self.stats = {s.name: StageStats(step=s.step) for s in loaded.recipe.stages}
        expanding = [i for i, step in enumerate(steps) if getattr(step, "expands", False)]
        # how many expansions a row id has gone through when it enters stage i
        self.depth = [sum(1 for e in expanding if e < i) for i in range(len(self.names))]
        self.seen_in: list[set[str]] = [set() for _ in self.names]
        self.seen_ok: list[set[str]] = [set() for _ in self.names]
        self.spans: dict[str, tuple[float, float]] = {}  # stage -> wall times of first request, last answer

    def add(self, row: dict[str, Any]) -> None:
        status, stage = row.get(STATUS), row.get(STAGE)
        if stage == SOURCE_STAGE:
            return
        row_id = str(row.get(ROW_ID))
        own_depth = row_id.count(EXPANSION_SEP)
        stop = self.position.get(str(stage)) if status != "ok" else None
        last = len(self.names) - 1 if stop is None else stop
        for i in range(last + 1):
            # the id this row (or its ancestor) had while stage i ran
            cut = own_depth - self.depth[i]
            at = row_id.rsplit(EXPANSION_SEP, cut)[0] if cut > 0 else row_id
            if at not in self.seen_in[i]:
                self.seen_in[i].add(at)
                self.stats[self.names[i]].rows_in += 1
            passed = stop is None or i < stop
            if passed and at not in self.seen_ok[i]:
                self.seen_ok[i].add(at)
                self.stats[self.names[i]].rows_ok += 1
        if stop is not None:
            st = self.stats[self.names[stop]]
            if status == "filtered":
                st.filtered += 1
            else:
                st.quarantined += 1
        for name, entry in json.loads(row.get(USAGE) or "{}").items():
            if name in self.stats:
                used, st = read_usage(entry), self.stats[name]
                st.llm_calls += used["calls"]
                st.prompt_tokens += used["prompt_tokens"]
                st.completion_tokens += used["completion_tokens"]
                st.cached_calls += used["cached"]
                for event, n in used["events"].items():
                    st.events[event] = st.events.get(event, 0) + n
                if used["started"] is not None and used["finished"] is not None:
                    self._span(name, used["started"], used["finished"])

    def _span(self, name: str, started: float, finished: float) -> None:
        """Widen the stage's generation span to cover a row's fresh requests."""
        first, last = self.spans.get(name, (started, finished))
        first, last = min(first, started), max(last, finished)
        self.spans[name] = first, last
        self.stats[name].generation_seconds = round(last - first, 3)


def export_context(loaded: LoadedRecipe) -> ExportContext:
    recipe = loaded.recipe
    stages = stage_decodings(recipe)
    if not stages:
        return ExportContext(recipe_name=recipe.name, recipe_hash=loaded.hash, seed=recipe.seed)
    first = stages[0]
    return ExportContext(
        recipe_name=recipe.name,
        recipe_hash=loaded.hash,
        seed=recipe.seed,
        generator_model=first.model,
        generator_revision=first.revision,
        decoding=first.decoding,
        stages=tuple(stages),
    )


def _on_ray(pipeline: Any, address: str | None) -> Any:
    """The same pipeline on Ray (distilabel's RayPipeline): a local Ray, or the cluster at `address`."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("--executor ray needs the `ray` extra: pip install 'safepref[ray]'") from None
    # Workers read the request cache path and import user steps like this process does.
    names = (REQUEST_CACHE_ENV, SERVERS_ENV, PROGRESS_ENV, STOP_FILE_ENV, "OMP_NUM_THREADS", "HF_HUB_OFFLINE")
    env = {k: os.environ[k] for k in names if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p)
    init: dict[str, Any] = {
        "runtime_env": {"env_vars": env},
        "include_dashboard": False,
        "log_to_driver": False,
    }
    if address is None:
        init["num_cpus"] = max(os.cpu_count() or 1, 4)  # one actor per step must fit on a small machine
    return pipeline.ray(ray_head_node_url=address, ray_init_kwargs=init)


def _source_record(recipe: Any, label: str) -> dict[str, Any]:
    """The source as the recipe gives it, plus, for a Hub source, `read` = `hub:ID@COMMIT` actually read."""
    record: dict[str, Any] = recipe.source.model_dump(mode="json", exclude_defaults=True)
    if recipe.source.kind == "hub":
        record["read"] = label
    return record


def _finished_before(out_dir: Path, recipe_hash: str, inputs: dict[str, str] | None) -> bool:
    """Whether this folder holds a finished run of exactly this recipe on exactly these input files
    (`inputs` None: on any inputs, the question before the source is read).

    Only then is distilabel's cache reused: its per-step cache keys ignore upstream changes (seen: it
    reused a step's batches after an upstream edit and wrote no output), so anything else starts afresh.
    """
    try:
        previous = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        previous.get("recipe_hash") == recipe_hash
        and (inputs is None or previous.get("inputs_sha256") == inputs)
        and (out_dir / WORK_DIR / "distilabel").is_dir()
    )


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
    """Run the recipe into `out_dir`.

    Re-running the same recipe into the same folder reuses the finished run (distilabel's cache);
    after an interruption or an edit, unchanged LLM requests come from the request cache.
    """
    started = time.perf_counter()
    recipe = loaded.recipe
    preflight(loaded)
    work_dir = out_dir / WORK_DIR
    with ExitStack() as serving:
        # one server per transformers/vllm backend for the whole run, stopped however the run ends.
        # Started now, unless this may be a finished run to reuse, so that loading the model overlaps
        # reading the source, building the pipeline and starting its workers.
        servers = None
        if not _finished_before(out_dir, loaded.hash, None):
            servers = serving.enter_context(recipe_servers(recipe, work_dir))
        rows, label = read_rows(loaded, allow_import_steps=allow_import_steps)  # bad rows quarantined here
        ids = [str(r[ROW_ID]) for r in rows]
        report_total(len(rows))
        out_dir.mkdir(parents=True, exist_ok=True)
        inputs = input_hashes(recipe, loaded.base_dir, rows)
        complete = _finished_before(out_dir, loaded.hash, inputs)
        # reusing a finished run rewrites the same manifest and card: keep when and how fast it was made
        reused = json.loads((out_dir / "manifest.json").read_text()) if complete else {}
        if not complete:
            # distilabel's own recovery of an interrupted run can hang (seen after SIGKILL), so an
            # unfinished or different earlier run is restarted from scratch: every LLM request it
            # finished is answered by the request cache, so only the requests in flight are generated again.
            (out_dir / "manifest.json").unlink(missing_ok=True)
            shutil.rmtree(work_dir / "distilabel", ignore_errors=True)
            if servers is None:
                servers = serving.enter_context(recipe_servers(recipe, work_dir))
        pipeline, steps = build_pipeline(loaded, rows, work_dir, allow_import_steps=allow_import_steps)
        _check_source_columns(loaded, rows, label, steps[0])
        # the source step reads the rows from a file in its own process: rows kept here would be copied
        # into every step's process when distilabel forks them
        del rows
        release_freed_memory()
        distiset = _run_pipeline(pipeline, loaded, work_dir, servers, complete, executor, ray_address)
        if servers is not None:
            servers.begin_stop()  # no longer needed: they shut down while the output is written
        reap_servers = serving.pop_all()
    with reap_servers:  # and are awaited once it is
        return _write_output(loaded, out_dir, distiset, steps, ids, label, inputs, reused, started)


def _write_output(
    loaded: LoadedRecipe,
    out_dir: Path,
    distiset: Any,
    steps: list[Any],
    ids: list[str],
    label: str,
    inputs: dict[str, str],
    reused: dict[str, Any],
    started: float,
) -> RunResult:
    """Account for every row the pipeline returned, write the configs, side tables, manifest and card."""
    from factory.dataset.card import render_card
    from factory.export.writer import write_records, write_resolved_recipe

    recipe = loaded.recipe
    dataset = distiset["default"]["train"]
    sources = {rid: i for i, rid in enumerate(ids)}
    del ids
    final_ids = [str(x) for x in dataset[ROW_ID]]
    created, expanded = _account_expansions(final_ids, sources)
    tally = StageTally(loaded, steps)

    def finished() -> Iterator[dict[str, Any]]:
        for row in _ordered(dataset, final_ids, sources):
            row = _finalise(row, steps)
            tally.add(row)
            yield row

    written = write_records(out_dir, finished(), recipe.outputs, export_context(loaded))
    quarantined: int = sum(written.quarantined.values())
    filtered: int = sum(written.filtered.values())
    if written.output_rows == 0 and quarantined > filtered:
        # empty because of errors, not of the recipe's filters. No manifest: a run with nothing to show
        # is not finished, so the next one starts afresh (finished requests come from the cache)
        raise RunFailed(
            f"no output: {quarantined} rows quarantined (stage {', '.join(sorted(written.quarantined))}),"
            f" {filtered} filtered; the reasons are in {out_dir / 'quarantine' / 'rows.parquet'}"
        )
    stages = tally.stats
    manifest = DatasetManifest(
        safepref_version=__version__,
        recipe_name=recipe.name,
        recipe_version=recipe.version,
        recipe_hash=loaded.hash,
        created_at=reused.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        seed=recipe.seed,
        license=recipe.license,
        source=_source_record(recipe, label),
        generators=[
            GeneratorInfo(
                backend=name,
                kind=spec.kind,
                model=model_id(spec.model),
                revision=model_revision(spec.model, spec.revision),
                generation=spec.generation.model_dump(mode="json"),
            )
            for name, spec in recipe.backends.items()
        ],
        configs=written.configs,  # type: ignore[arg-type]
        counts=RowCounts(
            input=len(sources),
            created=created,
            expanded=expanded,
            output=written.output_rows,
            filtered=written.filtered,
            quarantined=written.quarantined,
        ),
        stages=stages,
        inputs_sha256=inputs,
        contains_harmful_text=any(
            info["schema"] in HARMFUL_TEXT_SCHEMAS for info in written.configs.values()
        ),
        wall_time_s=reused.get("wall_time_s") or round(time.perf_counter() - started, 3),
        prompt_tokens=sum(s.prompt_tokens for s in stages.values()),
        completion_tokens=sum(s.completion_tokens for s in stages.values()),
    )
    (out_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2, by_alias=True))
    write_resolved_recipe(out_dir, recipe.model_dump(mode="json"))
    (out_dir / "README.md").write_text(render_card(recipe, manifest, out_dir))
    return RunResult(out_dir=out_dir, manifest=manifest)


def _run_pipeline(
    pipeline: Pipeline,
    loaded: LoadedRecipe,
    work_dir: Path,
    servers: StartedServers | None,
    complete: bool,
    executor: Literal["local", "ray"],
    ray_address: str | None,
) -> Any:
    """Run the pipeline, its first batch once the servers are ready (reusing distilabel's cache when
    `complete`)."""
    from distilabel.errors import DistilabelUserError

    # The request cache path reaches the workers through the environment, not a step field, so
    # moving the folder does not change distilabel's step signatures.
    previous = os.environ.get(REQUEST_CACHE_ENV)
    cache_path = (work_dir / REQUEST_CACHE_FILE).resolve()
    RequestCache.prepare(cache_path)  # here, once: steps load in parallel processes
    os.environ[REQUEST_CACHE_ENV] = str(cache_path)
    try:
        with stop_file(work_dir):
            if servers is not None and executor == "ray":
                servers.wait_ready()
            elif servers is not None:  # the workers start while the models load; no batch before
                pipeline.before_first_batch = servers.wait_ready
            if executor == "ray":
                pipeline = _on_ray(pipeline, ray_address)
            distiset = pipeline.run(use_cache=complete)
            raise_if_stopped()  # before anything is written: the re-run after the fix starts afresh
    except DistilabelUserError as exc:  # e.g. a user's import-path step with a wrong signature
        raise UserError(str(exc).splitlines()[0], where=str(loaded.path)) from None
    finally:
        if previous is None:
            os.environ.pop(REQUEST_CACHE_ENV, None)
        else:
            os.environ[REQUEST_CACHE_ENV] = previous
    return distiset
