"""`safepref eval …` sub-commands (parsing only; the work lives in factory.evaluation).

Every option's default is the settings' own (`C2Settings`, `HarmSettings`, their `decoding` and
`backend`), read from an instance built with no model, so each default exists once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from factory.core.errors import UserError
from factory.evaluation.c2_eval import C2Settings
from factory.evaluation.harm_eval import HarmSettings

if TYPE_CHECKING:
    from rich.progress import TaskID

    from factory.evaluation.batch_runner import BatchListener
    from factory.evaluation.model_specs import BackendOptions
    from factory.evaluation.runner import EvalOutcome
    from schemas.generation import GenerationParams

C2 = C2Settings(models=())
HARM = HarmSettings(models=())
MAX_FAILED_SHARE = 0.1  # the command line's own: the runners report the failures, the command judges them

eval_app = typer.Typer(
    help="Measure models: C²-Eval course-correction (c2) and harmlessness (harm).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: rich's would print every flag as `<bool>`
)

ModelOpt = Annotated[
    list[str],
    typer.Option(
        "--model",
        metavar="<model>",
        help="bundled | a model or LoRA-adapter folder | ORG/NAME[@REV] | openai:BASE_URL@MODEL_NAME. Repeat "
        "to compare models (e.g. a base and its fine-tune).",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", help="Report folder (re-running into it resumes).")]
JudgeOpt = Annotated[
    str,
    typer.Option(
        "--judge",
        help="keyword (no judge model), an LLM judge in any --model form (e.g. bundled), or for harm a"
        " safety classifier: classifier:MODEL (e.g. classifier:meta-llama/Llama-Guard-3-1B).",
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="Hub split for hub: data.")]
DataConfigOpt = Annotated[str | None, typer.Option("--data-config", help="Hub dataset config / data_dir.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of openers, sampling and bootstrap.")]
ChunkOpt = Annotated[int, typer.Option("--chunk", min=1, help="Answers stored per checkpoint.")]
ServerOpt = Annotated[
    str,
    typer.Option(
        "--server",
        help="What serves every model that is not openai: (one server at a time, started and stopped"
        " here): transformers (transformers serve), vllm (vllm serve) or sglang.",
    ),
]
ServerCommandOpt = Annotated[
    str | None,
    typer.Option(
        "--server-command",
        help="The server's command before its arguments, e.g. '/opt/vllm/bin/vllm serve' (a server in"
        " its own environment).",
    ),
]
ServerArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--server-arg",
        metavar="<arg>",
        help="An extra argument for the server (repeat), e.g. --server-arg=--tensor-parallel-size=2.",
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="transformers server: device (default: its own choice).")
]
PrefillOpt = Annotated[
    str,
    typer.Option(
        "--prefill-mode",
        help="openai: models: continue_final_message (vLLM/SGLang) or completions (renders the prompt here).",
    ),
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", min=1, help="Requests in flight on each server or endpoint.")
]
FailShareOpt = Annotated[
    float,
    typer.Option(
        "--max-failed-share",
        min=0.0,
        max=1.0,
        help="Exit 1 when more than this share of the generations or judgements failed.",
    ),
]
MaxNewTokensOpt = Annotated[
    int, typer.Option("--max-new-tokens", min=1, help="New tokens per generated answer or continuation.")
]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Sampling temperature (0 = greedy).")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Nucleus sampling: keep tokens up to this mass.")]


def _backend_options(
    server: str,
    server_command: str | None,
    server_args: list[str] | None,
    device: str | None,
    prefill_mode: str,
    concurrency: int,
) -> BackendOptions:
    import shlex

    from factory.evaluation.model_specs import BackendOptions

    if prefill_mode not in ("continue_final_message", "completions"):
        raise UserError(f"--prefill-mode {prefill_mode!r}: use continue_final_message or completions")
    mode: Literal["continue_final_message", "completions"] = (
        "completions" if prefill_mode == "completions" else "continue_final_message"
    )
    kinds: dict[str, Literal["transformers", "vllm", "sglang"]] = {
        "transformers": "transformers",
        "vllm": "vllm",
        "sglang": "sglang",
    }
    if server not in kinds:
        raise UserError(f"--server {server!r}: use transformers, vllm or sglang")
    try:
        command = tuple(shlex.split(server_command)) if server_command is not None else None
    except ValueError as exc:
        raise UserError(f"--server-command: {exc}") from None
    if command == ():
        raise UserError("--server-command must name a program")
    return BackendOptions(
        server=kinds[server],
        server_command=command,
        server_args=tuple(server_args or ()),
        device=device,
        prefill_mode=mode,
        max_concurrency=concurrency,
    )


def _decoding(max_new_tokens: int, temperature: float, top_p: float) -> GenerationParams:
    from pydantic import ValidationError

    from factory.core.config_files import format_validation_error
    from schemas.generation import GenerationParams

    try:
        return GenerationParams.model_validate(
            {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        )
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, location=_option_name)) from None


def _run(run_eval: Callable[..., EvalOutcome], settings: object, out: Path, max_failed_share: float) -> None:
    """Run an evaluation with progress bars, print its outcome, exit 1 past `max_failed_share`."""
    with _interrupt_line(out), _batch_bar() as (on_batch, on_event):
        outcome = run_eval(settings, out, on_batch=on_batch, on_event=on_event)
    _print_outcome(outcome, out)
    _fail_past_share(outcome, max_failed_share)


def _option_name(loc: tuple[int | str, ...]) -> str:
    return "--" + str(loc[0]).replace("_", "-")


def _parse_ks(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--k {text!r}: write comma-separated word counts, e.g. 10,20,30") from None


@eval_app.command("c2")
def c2(
    model: ModelOpt,
    out: OutOpt,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Rows in the PKU-SafeRLHF schema: bundled (demo rows, offline), a file, or"
            " hub:ID[@REV] — the paper: hub:PKU-Alignment/PKU-SafeRLHF with --split test --rows 500 --samples 20.",
        ),
    ] = C2.data,
    split: SplitOpt = C2.split,
    data_config: DataConfigOpt = C2.data_config,
    rows: Annotated[
        int,
        typer.Option(
            "--rows", min=1, help="Rows to use (PKU-SafeRLHF: the first passing the C²-Syn filter)."
        ),
    ] = C2.rows,
    samples: Annotated[
        int, typer.Option("--samples", min=1, help="b: sampled paths per row and k.")
    ] = C2.samples,
    ks: Annotated[
        str, typer.Option("--k", help="Forced harmful prefix lengths in words, comma-separated.")
    ] = ",".join(str(k) for k in C2.ks),
    judge: JudgeOpt = C2.judge,
    max_new_tokens: MaxNewTokensOpt = C2.decoding.max_new_tokens,
    temperature: TemperatureOpt = C2.decoding.temperature,
    top_p: TopPOpt = C2.decoding.top_p,
    seed: SeedOpt = C2.seed,
    chunk: ChunkOpt = C2.chunk,
    server: ServerOpt = C2.backend.server,
    server_command: ServerCommandOpt = None,
    server_arg: ServerArgOpt = None,
    device: DeviceOpt = C2.backend.device,
    prefill_mode: PrefillOpt = C2.backend.prefill_mode,
    concurrency: ConcurrencyOpt = C2.backend.max_concurrency,
    max_failed_share: FailShareOpt = MAX_FAILED_SHARE,
) -> None:
    """C²-Eval: force a harmful prefix of k words as an open assistant turn; report Corr@k and Corr_mean."""
    from factory.evaluation.c2_eval import run_c2_eval

    settings = C2Settings(
        models=model,
        data=data,
        split=split,
        data_config=data_config,
        rows=rows,
        samples=samples,
        ks=_parse_ks(ks),
        judge=judge,
        seed=seed,
        decoding=_decoding(max_new_tokens, temperature, top_p),
        chunk=chunk,
        backend=_backend_options(server, server_command, server_arg, device, prefill_mode, concurrency),
    )
    _run(run_c2_eval, settings, out, max_failed_share)


@eval_app.command("harm")
def harm(
    model: ModelOpt,
    out: OutOpt,
    data: Annotated[
        str,
        typer.Option("--data", help="Red-team instructions: bundled (demo), a file, or hub:ID[@REV]."),
    ] = HARM.data,
    split: SplitOpt = HARM.split,
    data_config: DataConfigOpt = HARM.data_config,
    column: Annotated[
        str | None, typer.Option("--column", help="Instruction column (default: instruction, else prompt).")
    ] = HARM.column,
    rows: Annotated[
        int | None, typer.Option("--rows", min=1, help="Use at most N instructions.")
    ] = HARM.rows,
    benign: Annotated[
        str | None,
        typer.Option("--benign", help="Helpfulness probe on benign instructions: bundled, a file or hub:ID."),
    ] = HARM.benign,
    judge: JudgeOpt = HARM.judge,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Answers per instruction.")] = HARM.samples,
    max_new_tokens: MaxNewTokensOpt = HARM.decoding.max_new_tokens,
    temperature: TemperatureOpt = HARM.decoding.temperature,
    top_p: TopPOpt = HARM.decoding.top_p,
    seed: SeedOpt = HARM.seed,
    chunk: ChunkOpt = HARM.chunk,
    server: ServerOpt = HARM.backend.server,
    server_command: ServerCommandOpt = None,
    server_arg: ServerArgOpt = None,
    device: DeviceOpt = HARM.backend.device,
    prefill_mode: PrefillOpt = HARM.backend.prefill_mode,
    concurrency: ConcurrencyOpt = HARM.backend.max_concurrency,
    max_failed_share: FailShareOpt = MAX_FAILED_SHARE,
) -> None:
    """Harmlessness: answer held-out red-team instructions, judge harmful/harmless, report the rate."""
    from factory.evaluation.harm_eval import run_harm_eval

    settings = HarmSettings(
        models=model,
        data=data,
        split=split,
        data_config=data_config,
        column=column,
        rows=rows,
        benign=benign,
        judge=judge,
        samples=samples,
        seed=seed,
        decoding=_decoding(max_new_tokens, temperature, top_p),
        chunk=chunk,
        backend=_backend_options(server, server_command, server_arg, device, prefill_mode, concurrency),
    )
    _run(run_harm_eval, settings, out, max_failed_share)


@contextmanager
def _interrupt_line(out: Path) -> Iterator[None]:
    """Ctrl-C: the server is stopped by then; one line says what is kept, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        sys.stderr.write(
            f"interrupted: {out}: the stored answers and verdicts are kept; run the same command "
            "again to resume\n"
        )
        raise typer.Exit(130) from None


@contextmanager
def _batch_bar() -> Iterator[tuple[BatchListener, Callable[[str], None]]]:
    """One rich bar per phase and model ("generating bundled", "judging bundled"), advanced per batch,
    and a listener that prints a line above the bars (a server starting, then ready)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def on_batch(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=total)
            bars.update(tasks[label], completed=done, total=total)

        def on_event(line: str) -> None:
            bars.console.print(line, markup=False, highlight=False)

        yield on_batch, on_event


def _fail_past_share(outcome: EvalOutcome, max_share: float) -> None:
    """Exit 1 (one line) when more than `max_share` of the generations or judgements failed."""
    from factory.core.errors import RunFailed

    failure = outcome.progress.failure(max_share)
    if failure is not None:
        raise RunFailed(failure)


def _print_outcome(outcome: EvalOutcome, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from factory.core.console import print_unclipped
    from factory.evaluation.report_files import summarize

    console = Console()
    p = outcome.progress
    console.print(
        f"generated {p.generated} (failed {p.generation_failed}), judged {p.judged} (failed {p.judge_failed})"
    )
    for error in p.errors:
        console.print(f"[yellow]generation error:[/] {error}", markup=True, highlight=False)
    if outcome.report is None:
        return
    summary = summarize(outcome.report)
    table = Table(title=summary.title, caption=summary.intro)
    for i, column in enumerate(summary.columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in summary.rows:
        table.add_row(*row)
    print_unclipped(console, table)
    for note in summary.notes:
        console.print(f"• {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"report: {out / 'report.json'} (also report.md and plots)", markup=False)
