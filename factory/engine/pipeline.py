"""The distilabel pipeline of a recipe: one step per stage after the source step, and how it runs
(locally or on Ray, with the run's request cache, managed model servers and stop file)."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from factory.backends.fail_fast import STOP_FILE_ENV, raise_if_stopped, stop_file
from factory.backends.managed_server import SERVERS_ENV, StartedServers, client_spec, recipe_servers
from factory.backends.request_cache import REQUEST_CACHE_ENV, REQUEST_CACHE_FILE, RequestCache
from factory.backends.request_window import llm_stage_batch_size
from factory.core.env import env_vars
from factory.core.errors import UserError
from factory.core.progress import PROGRESS_FILE_ENV
from factory.engine.intake import missing_column
from factory.engine.recipe import LoadedRecipe
from factory.steps.registry import resolve_step_class
from schemas.columns import is_bookkeeping

if TYPE_CHECKING:
    from factory.core.distilabel_compat import LeafRows, Pipeline


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


def require_source_columns(
    loaded: LoadedRecipe, rows: list[dict[str, Any]], label: str, first_step: Any
) -> None:
    """The source has rows, and the columns the first step reads. Intake (`read_rows`) has checked the
    columns of the steps that name theirs (`columns`, `required`); a plain distilabel step's `inputs`
    exist only once it is built, so an import-path step's are checked here."""
    if not rows:
        raise UserError("the source has no rows", where=label)
    needed = [c for c in first_step.inputs if not is_bookkeeping(c)]
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise missing_column(missing[0], f"stage {loaded.recipe.stages[0].name!r}", label)


class RunServers:
    """The run's model servers, one per transformers/vllm/sglang backend (`managed_server`): started as
    soon as the run knows it will generate, so that the models load while the source is read and the
    pipeline's workers start; awaited before the first batch (`run_pipeline`); asked to stop when the
    pipeline is done; stopped and reaped when the block ends, however the run ends."""

    def __init__(self, loaded: LoadedRecipe, work_dir: Path) -> None:
        self._loaded, self._work_dir = loaded, work_dir
        self._stack = ExitStack()
        self.started: StartedServers | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = self._stack.enter_context(recipe_servers(self._loaded.recipe, self._work_dir))

    def begin_stop(self) -> None:
        """They shut down (a second or two) while the run writes its output."""
        if self.started is not None:
            self.started.begin_stop()

    def __enter__(self) -> RunServers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()


def run_pipeline(
    loaded: LoadedRecipe,
    pipeline: Pipeline,
    work_dir: Path,
    servers: StartedServers | None,
    *,
    reuse: bool,
    executor: Literal["local", "ray"],
    ray_address: str | None,
) -> LeafRows:
    """Run the pipeline (from distilabel's cache when `reuse`) and return its last stage's rows.

    Locally the step workers start while `servers` load their models, and the first batch waits for
    them; on Ray they are ready first. The request cache path reaches the workers through the
    environment, not a step field, so moving the folder does not change distilabel's step signatures.
    """
    from distilabel.errors import DistilabelUserError

    cache_path = (work_dir / REQUEST_CACHE_FILE).resolve()
    RequestCache.prepare(cache_path)  # here, once: steps load in parallel processes
    try:
        with env_vars({REQUEST_CACHE_ENV: str(cache_path)}), stop_file(work_dir):
            if servers is not None and executor == "ray":
                servers.wait_ready()
            elif servers is not None:
                pipeline.before_first_batch = servers.wait_ready
            if executor == "ray":
                pipeline = _on_ray(pipeline, ray_address)
            outputs = pipeline.run(use_cache=reuse)
            raise_if_stopped()  # before anything is written: the re-run after the fix starts afresh
    except DistilabelUserError as exc:  # e.g. a user's import-path step with a wrong signature
        raise UserError(str(exc).splitlines()[0], where=str(loaded.path)) from None
    return outputs.leaf()  # factory.core.distilabel_compat.StepOutputs, in place of a Distiset


def _on_ray(pipeline: Any, address: str | None) -> Any:
    """The same pipeline on Ray (distilabel's RayPipeline): a local Ray, or the cluster at `address`."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("--executor ray needs the `ray` extra: pip install 'safepref[ray]'") from None
    # Workers read the request cache path and import user steps like this process does.
    names = (
        REQUEST_CACHE_ENV,
        SERVERS_ENV,
        PROGRESS_FILE_ENV,
        STOP_FILE_ENV,
        "OMP_NUM_THREADS",
        "HF_HUB_OFFLINE",
    )
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
