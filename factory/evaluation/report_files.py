"""Write an evaluation's report folder: report.json, report.md and PNG plots (matplotlib, Agg).

The summary text (`summarize`: `c2_summary`, `harm_summary`) is built once: report.md renders it as
Markdown and the CLI as a rich table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.core.errors import UserError
from schemas.eval_report import C2EvalReport, HarmEvalReport, Interval, JudgeInfo, RateResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

C2_PLOT = "corr_at_k.png"
HARM_PLOT = "harmful_rate.png"


EvalReport = C2EvalReport | HarmEvalReport


def write_report(report: EvalReport, out: Path) -> None:
    """report.json, report.md and the evaluation's plot (corr_at_k.png, harmful_rate.png)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(to_markdown(summarize(report)), encoding="utf-8")
    if isinstance(report, C2EvalReport):
        _save(corr_at_k_figure(report), out / C2_PLOT)
    else:
        _save(harmful_rate_figure(report), out / HARM_PLOT)


def summarize(report: EvalReport) -> ReportSummary:
    return c2_summary(report) if isinstance(report, C2EvalReport) else harm_summary(report)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ci(interval: Interval | None) -> str:
    return "" if interval is None else f" [{_pct(interval.low)}, {_pct(interval.high)}]"


@dataclass(frozen=True)
class ReportSummary:
    """A report's text, once: report.md and the CLI's rich display both render it."""

    title: str
    intro: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str]


def to_markdown(summary: ReportSummary) -> str:
    lines = [
        f"# {summary.title}",
        "",
        summary.intro,
        "",
        "| " + " | ".join(summary.columns) + " |",
        "|---|" + "---:|" * (len(summary.columns) - 1),
        *("| " + " | ".join(row) + " |" for row in summary.rows),
        "",
        *(f"- {note}" for note in summary.notes),
    ]
    return "\n".join(lines) + "\n"


def judge_name(judge: JudgeInfo) -> str:
    return judge.model.spec if judge.model else judge.kind


# What a positive verdict means, per judge kind and question: plots say this instead of a bare
# "harmful", since the keyword judge only detects refusal markers.
_MEASURES = {
    ("keyword", "c2"): "continuation contains a correction keyword",
    ("llm", "c2"): "judged course-correcting",
    ("keyword", "harm"): "answer has no refusal keyword",
    ("llm", "harm"): "judged harmful",
    ("classifier", "harm"): "classified unsafe",
    ("keyword", "helpful"): "answer is non-empty with no refusal keyword",
    ("llm", "helpful"): "judged helpful",
}


def measures(judge: JudgeInfo, question: str) -> str:
    return _MEASURES[(judge.kind, question)]


def _interval_kind(confidence: float, interval: str) -> str:
    return f"{int(confidence * 100)}% intervals: {interval.split(' (')[0]}"


def c2_summary(report: C2EvalReport) -> ReportSummary:
    cfg = report.config
    rows = []
    for result in report.models:
        cells = [_pct(result.corr_at.get(k)) for k in cfg.ks]
        rows.append([result.model.spec, *cells, _pct(result.corr_mean) + _ci(result.corr_mean_ci)])
    failed = {r.model.spec: sum(r.failed_at.values()) for r in report.models if any(r.failed_at.values())}
    notes = [
        f"data: {report.data.source}"
        + (f"@{report.data.revision}" if report.data.revision else "")
        + f" — {report.data.rows_used} rows ({report.data.rows_skipped} that do not qualify skipped)",
        f"rows chosen: {report.data.selection}",
        f"paths: {cfg.samples} samples × {len(cfg.ks)} k × {report.data.rows_used} rows per model;"
        f" decoding temperature {cfg.decoding.temperature}, top-p {cfg.decoding.top_p},"
        f" {cfg.decoding.max_new_tokens} new tokens; seed {cfg.seed}",
        f"judge: {judge_name(report.judge)} ({report.judge.rule})",
    ]
    if failed:
        notes.append(f"paths without a verdict (failed; a re-run retries them): {failed}")
    return ReportSummary(
        title="C²-Eval: course-correction",
        intro="Corr@k in % (share of paths judged as course-correcting after a forced harmful prefix of k"
        f" words); {int(cfg.confidence * 100)}% intervals by {cfg.interval}.",
        columns=["model", *(f"Corr@{k}" for k in cfg.ks), "Corr_mean"],
        rows=rows,
        notes=notes,
    )


def _rate_cell(rate: RateResult | None) -> str:
    if rate is None:
        return "–"
    return f"{_pct(rate.rate)}{_ci(rate.ci)} (n={rate.judged})"


def harm_summary(report: HarmEvalReport) -> ReportSummary:
    cfg = report.config
    helpful = any(r.helpful is not None for r in report.models)
    rows = [
        [r.model.spec, _rate_cell(r.harmful), *([_rate_cell(r.helpful)] if helpful else [])]
        for r in report.models
    ]
    notes = [
        f"red-team instructions: {report.data.source} ({report.data.rows_used} rows)",
        f"harm judge: {judge_name(report.judge)} ({report.judge.rule})",
    ]
    if report.benign is not None and report.helpful_judge is not None:
        notes.append(
            f"helpfulness probe: {report.benign.source} ({report.benign.rows_used} rows),"
            f" judge {judge_name(report.helpful_judge)}"
        )
    notes.append(
        f"decoding: temperature {cfg.decoding.temperature}, top-p {cfg.decoding.top_p},"
        f" {cfg.decoding.max_new_tokens} new tokens, {cfg.samples} answer(s) per instruction, seed {cfg.seed}"
    )
    return ReportSummary(
        title="Harmlessness",
        intro=f"Rates in %, {int(cfg.confidence * 100)}% intervals by {cfg.interval}.",
        columns=["model", "harmful rate", *(["helpful rate"] if helpful else [])],
        rows=rows,
        notes=notes,
    )


def corr_at_k_figure(report: C2EvalReport) -> Figure:
    """Corr@k per model with shaded intervals; the title states n, the judge and the interval type."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    cfg = report.config
    ks = cfg.ks
    for result in report.models:
        points = [
            (k, result.corr_at[k], result.ci_at.get(k)) for k in ks if result.corr_at.get(k) is not None
        ]
        if not points:
            continue
        xs = [k for k, _, _ in points]
        ys = [100 * (v or 0.0) for _, v, _ in points]
        n = min(result.judged_at.get(k, 0) for k in xs)
        (line,) = ax.plot(
            xs,
            ys,
            marker="o",
            label=f"{result.model.spec} (mean {_pct(result.corr_mean)}, n={n} paths per k)",
        )
        lows = [100 * ci.low if ci else y for (_, _, ci), y in zip(points, ys, strict=True)]
        highs = [100 * ci.high if ci else y for (_, _, ci), y in zip(points, ys, strict=True)]
        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("k (words of the forced harmful prefix)")
    ax.set_ylabel(f"Corr@k (%): {measures(report.judge, 'c2')}")
    ax.set_xticks(list(ks))
    ax.set_ylim(0, 100)
    ax.set_title(
        "C²-Eval: course-correction rate\n"
        f"{report.data.rows_used} rows × {cfg.samples} samples; judge: {judge_name(report.judge)};"
        f" {_interval_kind(cfg.confidence, cfg.interval)}",
        fontsize="medium",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def harmful_rate_figure(report: HarmEvalReport) -> Figure:
    """Bars per model with interval whiskers; labels say what each judge detects, bars carry n."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    cfg = report.config
    series: list[tuple[str, list[RateResult | None]]] = [
        (
            f"{measures(report.judge, 'harm')} (judge: {judge_name(report.judge)})",
            [r.harmful for r in report.models],
        )
    ]
    if report.helpful_judge is not None and any(r.helpful is not None for r in report.models):
        series.append(
            (
                f"benign probe: {measures(report.helpful_judge, 'helpful')}"
                f" (judge: {judge_name(report.helpful_judge)})",
                [r.helpful for r in report.models],
            )
        )
    width = 0.8 / len(series)
    for s, (label, rates) in enumerate(series):
        xs = [i + (s - (len(series) - 1) / 2) * width for i in range(len(rates))]
        ys = [100 * (r.rate or 0.0) if r else 0.0 for r in rates]
        errs = [
            [y - 100 * r.ci.low if r and r.ci else 0.0 for r, y in zip(rates, ys, strict=True)],
            [100 * r.ci.high - y if r and r.ci else 0.0 for r, y in zip(rates, ys, strict=True)],
        ]
        bars = ax.bar(xs, ys, width=width, yerr=errs, capsize=4, label=label)
        ax.bar_label(bars, labels=[f"n={r.judged}" if r else "" for r in rates], fontsize="x-small")
    ax.set_xticks(range(len(report.models)), [r.model.spec for r in report.models], rotation=15, ha="right")
    ax.set_ylabel("share of answers (%)")
    ax.set_ylim(0, 125)  # headroom: a 100 % bar, its n label and the legend do not collide
    ax.set_title(
        f"Harmlessness probe; {_interval_kind(cfg.confidence, cfg.interval)}",
        fontsize="medium",
    )
    ax.legend(fontsize="x-small", loc="upper center")
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path)
    pyplot().close(fig)


def pyplot():  # type: ignore[no-untyped-def]
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("charts need matplotlib: pip install 'safepref[eval]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
