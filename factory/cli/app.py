"""The `safepref` command line. It parses arguments and calls the library; nothing else lives here."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from factory.core.console import print_unclipped
from factory.core.errors import UserError, printable

if TYPE_CHECKING:
    from schemas.manifest import DatasetManifest

app = typer.Typer(
    name="safepref",
    help="Build, check, publish and train on synthetic safety-preference datasets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help and errors: rich's help prints every flag as `<bool>`, errors boxed
)
console = Console()

RecipeArg = Annotated[
    str, typer.Argument(help="Recipe file (.yaml) or built-in recipe name (see `safepref recipes`).")
]


def _set_option(what: str) -> Any:
    return typer.Option(
        "--set",
        metavar="<key.path=value>",
        help=f"Override a {what} value: key.path=value (YAML value). Repeatable.",
    )


SetOpt = Annotated[list[str] | None, _set_option("recipe")]
TrainSetOpt = Annotated[list[str] | None, _set_option("training-config")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Read at most N source rows.")]
AllowImportOpt = Annotated[
    bool,
    typer.Option("--allow-import-steps", help="Let the recipe import steps named by `module:Class`."),
]


@app.command()
def run(
    recipe: RecipeArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: ./out/<recipe name>).")
    ] = None,
    overrides: SetOpt = None,
    limit: LimitOpt = None,
    allow_import_steps: AllowImportOpt = False,
    executor: Annotated[str, typer.Option("--executor", help="local (default) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray head node (ray://host:10001); default: a local Ray.")
    ] = None,
) -> None:
    """Run a recipe and write a Hub-ready dataset folder (re-running the same recipe resumes)."""
    if executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray, got {executor!r}")
    from factory.engine.recipe import load_recipe

    loaded = load_recipe(recipe, overrides, limit)
    from factory.engine.run import run_recipe

    out_dir = out or Path("out") / loaded.recipe.name
    from factory.core.env import env_vars
    from factory.core.progress import PROGRESS_FILE_ENV, ProgressWatcher
    from factory.core.storage_errors import storage_errors_reported
    from factory.engine.processes import RunInterrupted, exit_interrupted

    progress_file = (out_dir / ".work" / "progress.jsonl").resolve()
    console.print(f"running [bold]{loaded.recipe.name}[/] → {out_dir}")
    try:
        with (
            storage_errors_reported(out_dir),  # the display's own file, before the engine's
            env_vars({PROGRESS_FILE_ENV: str(progress_file)}),  # the steps (in worker processes) append to it
            ProgressWatcher(progress_file, [s.name for s in loaded.recipe.stages]),
        ):
            result = run_recipe(
                loaded,
                out_dir,
                allow_import_steps=allow_import_steps,
                executor="ray" if executor == "ray" else "local",
                ray_address=address,
            )
    except RunInterrupted as exc:
        exit_interrupted(str(exc))
    _print_summary(result.manifest, out_dir)


def _print_summary(manifest: DatasetManifest, out_dir: Path) -> None:
    table = Table(title=f"{manifest.recipe_name} → {out_dir}")
    for col in ("stage", "step", "in", "ok", "filtered", "quarantined", "LLM calls", "gen tokens"):
        table.add_column(col, justify="right" if col not in ("stage", "step") else "left")
    for name, st in manifest.stages.items():
        table.add_row(
            name,
            st.step,
            str(st.rows_in),
            str(st.rows_ok),
            str(st.filtered),
            str(st.quarantined),
            str(st.llm_calls),
            str(st.completion_tokens),
        )
    print_unclipped(console, table)
    c = manifest.counts
    console.print(
        f"rows: input {c.input}"
        + (f" + created {c.created} − expanded {c.expanded}" if c.created else "")
        + f" = output {c.output} + filtered {sum(c.filtered.values())} + quarantined {sum(c.quarantined.values())}"
    )
    for name, info in manifest.configs.items():
        rows = sum(s.num_rows for s in info.splits.values())
        console.print(
            f"config [bold]{name}[/] ({info.schema_name}): {rows} rows"
            + (" (default)" if info.default else "")
        )
    if manifest.wall_time_s is not None:
        console.print(
            f"wall time {manifest.wall_time_s:.1f} s, {manifest.completion_tokens} generated tokens"
        )


@app.command()
def validate(recipe: RecipeArg, overrides: SetOpt = None, allow_import_steps: AllowImportOpt = False) -> None:
    """Validate a recipe without running it."""
    from factory.engine.column_flow import column_flow
    from factory.engine.intake import read_rows
    from factory.engine.preflight import preflight
    from factory.engine.recipe import load_recipe

    loaded = load_recipe(recipe, overrides)
    preflight(loaded)  # the checks `run` makes before reading a row: source, templates, model folders
    if loaded.recipe.source.kind in ("file", "bundled"):  # a Hub source is only read by `run`
        read_rows(loaded, allow_import_steps=allow_import_steps)  # and those it makes on the rows
    else:  # the recipe's columns, stage to stage, without the source's
        column_flow(loaded, allow_import_steps=allow_import_steps, source=None)
    console.print(
        f"[green]ok[/] {loaded.path} (recipe {loaded.recipe.name} v{loaded.recipe.version}, sha256 {loaded.hash[:12]})"
    )


@app.command()
def plan(recipe: RecipeArg, overrides: SetOpt = None, limit: LimitOpt = None) -> None:
    """Show the stages, and the LLM calls and tokens the recipe will need at most."""
    from factory.engine.plan import plan_recipe
    from factory.engine.recipe import load_recipe

    loaded = load_recipe(recipe, overrides, limit)
    p = plan_recipe(loaded)
    table = Table(title=f"plan: {loaded.recipe.name} ({p.source_rows} source rows from {p.source_label})")
    for col in ("stage", "step", "backend", "LLM calls/row", "LLM calls (max)", "new tokens (max)"):
        table.add_column(col)
    for s in p.stages:
        table.add_row(
            s.name, s.step, s.backend or "-", f"{s.calls_per_row:g}", f"{s.calls:,}", f"{s.max_new_tokens:,}"
        )
    print_unclipped(console, table)
    console.print(f"total: {p.total_calls:,} LLM calls, at most {p.total_new_tokens:,} generated tokens")


@app.command()
def check(folder: Annotated[Path, typer.Argument(help="Dataset folder written by `safepref run`.")]) -> None:
    """Re-validate every row of a dataset folder against its schemas; exit 1 on any problem."""
    from factory.dataset.folder_check import check_folder

    if not folder.is_dir():
        raise UserError("no such folder", where=str(folder))
    report = check_folder(folder)
    if report.ok:
        console.print(f"[green]ok[/] {folder}: {report.rows_checked} rows valid")
        return
    for problem in report.problems:
        sys.stderr.write(printable(f"{folder}: {problem}") + "\n")
    raise typer.Exit(1)


@app.command()
def inspect(
    folder: Annotated[Path, typer.Argument(help="Dataset folder written by `safepref run`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file to write (default: DIR/report.html).")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=0, help="Sample rows shown per config.")] = 3,
) -> None:
    """Write a self-contained HTML report of a run: funnel, quarantine, tokens, lengths, sample rows."""
    from factory.dataset.inspect import write_inspect_report

    path = write_inspect_report(folder, out, rows)
    console.print(f"report written to {path}")


@app.command()
def schema(
    name: Annotated[
        str,
        typer.Argument(
            help="recipe, manifest, a record schema, step:NAME / exporter:NAME (params), or `list`."
        ),
    ],
) -> None:
    """Print the JSON Schema of a record, the recipe, the manifest, or a step's or exporter's params."""
    from pydantic import BaseModel

    from schemas.manifest import DatasetManifest
    from schemas.recipe import Recipe
    from schemas.registry import RECORD_SCHEMAS, params_models

    models: dict[str, type[BaseModel]] = {
        "recipe": Recipe,
        "manifest": DatasetManifest,
        **RECORD_SCHEMAS,
        **params_models(),
    }
    if name == "list":
        for n in models:
            console.print(n)
        return
    if name not in models:
        raise UserError(f"unknown schema {name!r}; one of: {', '.join(models)}")
    sys.stdout.write(json.dumps(models[name].model_json_schema(by_alias=True), indent=2) + "\n")


@app.command()
def recipes() -> None:
    """List the built-in recipes."""
    from factory.core.config_files import read_yaml
    from factory.engine.recipe import builtin_recipe_names, builtin_recipes_dir

    table = Table(title="built-in recipes")
    table.add_column("name")
    table.add_column("description")
    for name in builtin_recipe_names():
        data = read_yaml(builtin_recipes_dir() / f"{name}.yaml")
        table.add_row(name, str(data.get("description", "")) if isinstance(data, dict) else "")
    console.print(table)


@app.command()
def publish(
    folder: Annotated[Path, typer.Argument(help="Dataset folder written by `safepref run`.")],
    repo: Annotated[str, typer.Option("--repo", help="Hub dataset repo id, OWNER/NAME.")],
    public: Annotated[
        bool, typer.Option("--public", help="Make the dataset public (asks unless --yes).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    gated: Annotated[
        str | None, typer.Option("--gated", help="auto | manual | off (default: manual for harmful text).")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Tag the published commit, e.g. v1.0.0.")] = None,
) -> None:
    """Publish a dataset folder to the Hugging Face Hub (private and gated by default). Token: HF_TOKEN."""
    from factory.dataset.publish import publish_folder

    if gated not in (None, "auto", "manual", "off"):
        raise UserError(f"--gated must be auto, manual or off, got {gated!r}")
    gating: Literal["auto", "manual", "off"] | None = gated  # type: ignore[assignment]
    result = publish_folder(
        folder,
        repo,
        public=public,
        yes=yes,
        gated=gating,
        tag=tag,
        confirm=_ask,
    )
    if result.commit_oid is None:
        console.print(f"{result.repo_id}: already up to date (no commit)")
    else:
        console.print(f"{result.repo_id}: committed {result.commit_oid[:12]} ({result.files_uploaded} files)")
    console.print(
        f"private={result.private} gated={result.gated}"
        + (f" tag={result.tag}" if result.tag else "")
        + f"\n{result.url}"
    )


def _config_value(name: str) -> Any:
    """`--NAME`, which replaces the training config's `NAME:`; help and default from TrainConfig's field."""
    from trainers.config import TrainConfig

    field = TrainConfig.model_fields[name]
    description = str(field.description)
    otherwise = "" if field.default is None else f", else {field.default}"
    return typer.Option(
        None,
        f"--{name}",
        help=f"{description[0].upper()}{description[1:]}.",
        show_default=f"the config's `{name}:`{otherwise}",
    )


@app.command()
def train(
    config: Annotated[
        str, typer.Argument(help="Training config file or built-in name (dpo-demo, ptalign-demo, …).")
    ],
    dataset: str | None = _config_value("dataset"),
    model: str | None = _config_value("model"),
    out: str | None = _config_value("out"),
    overrides: TrainSetOpt = None,
) -> None:
    """Fine-tune a model on a safepref dataset (DPO, group-aware DPO, PT-ALIGN MLE + unlikelihood)."""
    from trainers.run import train as run_training

    out_dir = run_training(config, dataset=dataset, model=model, out=out, overrides=overrides)
    console.print(f"model written to {out_dir}")


def _ask(question: str) -> bool:
    """Yes only from a person at a terminal: without one (CI, a pipe) the answer is no, not "Aborted."."""
    return sys.stdin.isatty() and typer.confirm(question, default=False)


def _register_subcommands() -> None:
    from factory.cli.eval import eval_app

    app.add_typer(eval_app, name="eval")


_register_subcommands()


def main() -> None:
    """Entry point: user errors are one line on stderr and exit 2; bugs keep their traceback."""
    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click

    # huggingface_hub logs each transport retry as two warnings (11 lines for an unreachable Hub)
    # before the error that the command turns into its one line
    logging.getLogger("huggingface_hub.utils._http").setLevel(logging.ERROR)
    try:
        code = app(standalone_mode=False)  # usage errors come here instead of typer's 5-line box
    except UserError as exc:
        _fail(str(exc), exc.exit_code)
    except NoArgsIsHelpError as exc:
        sys.stdout.write(exc.format_message() + "\n")
        sys.exit(2)
    except UsageError as exc:  # a bad or missing option: the same one line as any user error
        command = exc.ctx.command_path if exc.ctx is not None else "safepref"
        _fail(f"{command}: {exc.format_message()}", 2)
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {printable(message)}\n")  # one plain line: no wrapping, no markup
    sys.exit(code)


if __name__ == "__main__":
    main()
