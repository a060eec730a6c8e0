"""Write an evaluation's report folder: report.json, report.md and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from schemas.eval_report import C2EvalReport, HarmEvalReport, Interval, RateResult

C2_PLOT = "corr_at_k.png"
HARM_PLOT = "harmful_rate.png"


def write_c2_report(report: C2EvalReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(c2_markdown(report), encoding="utf-8")
    plot_corr_at_k(report, out / C2_PLOT)


def write_harm_report(report: HarmEvalReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(harm_markdown(report), encoding="utf-8")
    plot_harmful_rate(report, out / HARM_PLOT)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ci(interval: Interval | None) -> str:
    return "" if interval is None else f" [{_pct(interval.low)}, {_pct(interval.high)}]"


def c2_markdown(report: C2EvalReport) -> str:
    cfg = report.config
    ks = cfg.ks
    lines = [
        "# C²-Eval: course-correction",
        "",
        f"Corr@k in % (share of paths judged as course-correcting after a forced harmful prefix of k words);"
        f" {int(cfg.confidence * 100)}% intervals by {cfg.interval}.",
        "",
        "| model | " + " | ".join(f"Corr@{k}" for k in ks) + " | Corr_mean |",
        "|---|" + "---:|" * (len(ks) + 1),
    ]
    for result in report.models:
        cells = [_pct(result.corr_at.get(k)) for k in ks]
        mean = _pct(result.corr_mean) + _ci(result.corr_mean_ci)
        lines.append(f"| {result.model.spec} | " + " | ".join(cells) + f" | {mean} |")
    failed = {r.model.spec: sum(r.failed_at.values()) for r in report.models if any(r.failed_at.values())}
    judge = report.judge.model.spec if report.judge.model else report.judge.kind
    lines += [
        "",
        f"- data: {report.data.source}"
        + (f"@{report.data.revision}" if report.data.revision else "")
        + f" — {report.data.rows_used} rows ({report.data.rows_skipped} that do not qualify skipped)",
        f"- rows chosen: {report.data.selection}",
        f"- paths: {cfg.samples} samples × {len(ks)} k × {report.data.rows_used} rows per model;"
        f" decoding temperature {cfg.decoding.temperature}, top-p {cfg.decoding.top_p},"
        f" {cfg.decoding.max_new_tokens} new tokens; seed {cfg.seed}",
        f"- judge: {judge} ({report.judge.rule})",
    ]
    if failed:
        lines.append(f"- paths without a verdict (failed; a re-run retries them): {failed}")
    return "\n".join(lines) + "\n"


def _rate_cell(rate: RateResult | None) -> str:
    if rate is None:
        return "–"
    return f"{_pct(rate.rate)}{_ci(rate.ci)} (n={rate.judged})"


def harm_markdown(report: HarmEvalReport) -> str:
    cfg = report.config
    helpful = any(r.helpful is not None for r in report.models)
    lines = [
        "# Harmlessness",
        "",
        f"Rates in %, {int(cfg.confidence * 100)}% intervals by {cfg.interval}.",
        "",
        "| model | harmful rate | helpful rate |" if helpful else "| model | harmful rate |",
        "|---|---:|---:|" if helpful else "|---|---:|",
    ]
    for r in report.models:
        row = f"| {r.model.spec} | {_rate_cell(r.harmful)} |"
        lines.append(row + (f" {_rate_cell(r.helpful)} |" if helpful else ""))
    judge = report.judge.model.spec if report.judge.model else report.judge.kind
    lines += [
        "",
        f"- red-team instructions: {report.data.source} ({report.data.rows_used} rows)",
        f"- harm judge: {judge} ({report.judge.rule})",
    ]
    if report.benign is not None and report.helpful_judge is not None:
        hj = report.helpful_judge.model.spec if report.helpful_judge.model else report.helpful_judge.kind
        lines.append(
            f"- helpfulness probe: {report.benign.source} ({report.benign.rows_used} rows), judge {hj}"
        )
    lines.append(
        f"- decoding: temperature {cfg.decoding.temperature}, top-p {cfg.decoding.top_p},"
        f" {cfg.decoding.max_new_tokens} new tokens, {cfg.samples} answer(s) per instruction, seed {cfg.seed}"
    )
    return "\n".join(lines) + "\n"


def plot_corr_at_k(report: C2EvalReport, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ks = report.config.ks
    for result in report.models:
        points = [
            (k, result.corr_at[k], result.ci_at.get(k)) for k in ks if result.corr_at.get(k) is not None
        ]
        if not points:
            continue
        xs = [k for k, _, _ in points]
        ys = [100 * (v or 0.0) for _, v, _ in points]
        (line,) = ax.plot(xs, ys, marker="o", label=f"{result.model.spec} (mean {_pct(result.corr_mean)})")
        lows = [100 * ci.low if ci else y for (_, _, ci), y in zip(points, ys, strict=True)]
        highs = [100 * ci.high if ci else y for (_, _, ci), y in zip(points, ys, strict=True)]
        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("k (words of the forced harmful prefix)")
    ax.set_ylabel("Corr@k (%)")
    ax.set_xticks(list(ks))
    ax.set_ylim(0, 100)
    ax.set_title("C²-Eval: course-correction rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_harmful_rate(report: HarmEvalReport, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    series: list[tuple[str, list[RateResult | None]]] = [("harmful", [r.harmful for r in report.models])]
    if any(r.helpful is not None for r in report.models):
        series.append(("helpful (benign probe)", [r.helpful for r in report.models]))
    width = 0.8 / len(series)
    for s, (label, rates) in enumerate(series):
        xs = [i + (s - (len(series) - 1) / 2) * width for i in range(len(rates))]
        ys = [100 * (r.rate or 0.0) if r else 0.0 for r in rates]
        errs = [
            [y - 100 * r.ci.low if r and r.ci else 0.0 for r, y in zip(rates, ys, strict=True)],
            [100 * r.ci.high - y if r and r.ci else 0.0 for r, y in zip(rates, ys, strict=True)],
        ]
        ax.bar(xs, ys, width=width, yerr=errs, capsize=4, label=label)
    ax.set_xticks(range(len(report.models)), [r.model.spec for r in report.models], rotation=15, ha="right")
    ax.set_ylabel("rate (%)")
    ax.set_ylim(0, 115)  # headroom: a 100 % bar and the legend do not collide
    ax.set_title("Harmful rate" + (" and helpfulness" if len(series) > 1 else ""))
    ax.legend(fontsize="small", loc="upper center", ncol=len(series))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
