"""`safepref inspect DIR`: one self-contained HTML page to review a finished run before publishing it.

What it shows, all read from the folder (manifest.json, the config parquet files, filtered/ and
quarantine/): the row funnel by stage and filter rule, quarantine reasons, LLM calls and tokens per
stage, text length histograms per config and column, the C²-Syn cut positions, the PT-ALIGN toxic-span
share, and a few sample rows per config — text behind a content warning (`<details>`) when the config
holds harmful text. Charts are matplotlib SVG inlined into the page; nothing is fetched from the
network when it is opened. The page is rendered by a sandboxed Jinja2 environment with autoescaping,
so text from the dataset can never become markup.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from markupsafe import Markup

from factory import __version__
from factory.core.dataset_folder import read_manifest
from factory.core.errors import UserError
from factory.evaluation.report_files import pyplot
from schemas.manifest import DatasetManifest
from schemas.registry import HARMFUL_TEXT_SCHEMAS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TEMPLATE = "inspect_report.html.jinja"
REPORT_FILE = "report.html"
# Labels, not text: a string column whose values are all this short (ids, domains, principles) gets
# no length histogram.
LABEL_MAX_CHARS = 40
SAMPLE_TEXT_MAX_CHARS = 1500
REASON_MAX_CHARS = 160


@dataclass
class Histogram:
    title: str
    n: int
    svg: Markup


@dataclass
class SampleRow:
    index: int
    fields: list[tuple[str, str]]


@dataclass
class ConfigView:
    name: str
    schema_name: str
    default: bool
    rows: int
    harmful: bool
    samples: list[SampleRow] = field(default_factory=list)
    histograms: list[Histogram] = field(default_factory=list)


def write_inspect_report(folder: Path, out: Path | None = None, sample_rows: int = 3) -> Path:
    """Write the HTML report of the run in `folder` to `out` (default `folder/report.html`)."""
    if not folder.is_dir():
        raise UserError("no such folder", where=str(folder))
    if sample_rows < 0:
        raise UserError(f"--rows must be 0 or more, got {sample_rows}")
    path = out or folder / REPORT_FILE
    html = render_inspect_report(folder, sample_rows)
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the report: {exc.strerror}", where=str(path)) from None
    return path


def render_inspect_report(folder: Path, sample_rows: int = 3) -> str:
    manifest = read_manifest(folder)
    configs = [_config_view(folder, manifest, name, sample_rows) for name in manifest.configs]
    filtered = _accounting_rows(folder / "filtered" / "rows.parquet", "rule")
    quarantined = _accounting_rows(folder / "quarantine" / "rows.parquet", "reason")
    context = {
        "manifest": manifest,
        "version": __version__,
        "funnel": _funnel(manifest, filtered),
        "funnel_svg": _funnel_chart(manifest),
        "filter_rules": _grouped(filtered, "rule"),
        "quarantine_reasons": _grouped(quarantined, "reason"),
        "stages": _stage_rows(manifest),
        "throughput": _throughput(manifest),
        "configs": configs,
        "cut_positions": _cut_positions(folder, manifest),
        "toxic_spans": _toxic_spans(folder, manifest),
    }
    return _template().render(**context)


# ----------------------------------------------------------------------------- reading the folder
def _config_files(folder: Path, manifest: DatasetManifest, name: str) -> list[Path]:
    return [folder / rel for split in manifest.configs[name].splits.values() for rel in split.files]


@contextmanager
def _reading(files: list[Path]) -> Iterator[None]:
    try:
        yield
    except (OSError, pa.ArrowInvalid) as exc:  # a missing or damaged shard: `safepref check` says more
        raise UserError(
            f"cannot read the config's parquet files: {exc}", where=str(files[0].parent)
        ) from None


def _read_columns(files: list[Path], columns: list[str] | None = None) -> pa.Table:
    """Only the columns asked for, as Arrow (a config may hold millions of rows)."""
    with _reading(files):
        return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def _first_rows(files: list[Path], n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with _reading(files):
        for f in files:
            if len(rows) >= n:
                break
            batch = next(pq.ParquetFile(f).iter_batches(batch_size=n - len(rows)), None)
            rows.extend(batch.to_pylist() if batch is not None else [])
    return rows


def _accounting_rows(path: Path, reason: str) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return pq.read_table(path, columns=["stage", reason]).to_pylist()


def _grouped(rows: list[dict[str, Any]], reason: str) -> list[tuple[str, str, int]]:
    """(stage, reason, rows), most frequent first; long error texts are cut so equal causes group."""
    counts = Counter((str(r["stage"]), _cut(str(r[reason]), REASON_MAX_CHARS)) for r in rows)
    return [(stage, why, n) for (stage, why), n in counts.most_common()]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- run sections
def _funnel(manifest: DatasetManifest, filtered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_stage = Counter((str(r["stage"]), str(r["rule"])) for r in filtered)
    return [
        {
            "stage": name,
            "step": st.step,
            "rows_in": st.rows_in,
            "rows_ok": st.rows_ok,
            "filtered": st.filtered,
            "quarantined": st.quarantined,
            "rules": sorted(
                ((rule, n) for (stage, rule), n in by_stage.items() if stage == name), key=lambda x: -x[1]
            ),
        }
        for name, st in manifest.stages.items()
    ]


def _stage_rows(manifest: DatasetManifest) -> list[dict[str, Any]]:
    return [
        {
            "stage": name,
            "calls": st.llm_calls,
            "cached": st.cached_calls,
            "prompt_tokens": st.prompt_tokens,
            "completion_tokens": st.completion_tokens,
            "tokens_per_call": st.completion_tokens / st.llm_calls if st.llm_calls else None,
            "tokens_per_s": st.generated_tokens_per_s(),
            "share": st.completion_tokens / manifest.completion_tokens
            if manifest.completion_tokens
            else None,
        }
        for name, st in manifest.stages.items()
        if st.llm_calls
    ]


def _throughput(manifest: DatasetManifest) -> float | None:
    """Generated tokens per second of wall time over the whole run (stages overlap in the pipeline)."""
    if not manifest.wall_time_s or not manifest.completion_tokens:
        return None
    return manifest.completion_tokens / manifest.wall_time_s


def _config_view(folder: Path, manifest: DatasetManifest, name: str, sample_rows: int) -> ConfigView:
    info = manifest.configs[name]
    files = _config_files(folder, manifest, name)
    view = ConfigView(
        name=name,
        schema_name=info.schema_name,
        default=info.default,
        rows=sum(split.num_rows for split in info.splits.values()),
        harmful=manifest.contains_harmful_text and info.schema_name in HARMFUL_TEXT_SCHEMAS,
    )
    view.samples = [
        SampleRow(i, [(k, _cut(_display(v), SAMPLE_TEXT_MAX_CHARS)) for k, v in row.items()])
        for i, row in enumerate(_first_rows(files, sample_rows))
    ]
    for column, lengths in _text_lengths(files).items():
        title = f"{name}.{column}: characters (n={len(lengths)} rows)"
        view.histograms.append(
            Histogram(
                title=title, n=len(lengths), svg=_histogram_svg([lengths], [column], title, "characters")
            )
        )
    return view


def _display(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _text_lengths(files: list[Path]) -> dict[str, np.ndarray]:
    """Characters per row of each text column: strings, and chat message lists (their contents summed).
    Ids and labels (every value at most LABEL_MAX_CHARS long) are not text."""
    lengths: dict[str, np.ndarray] = {}
    with _reading(files):
        schema = pq.read_schema(files[0])
    for column in schema:
        name, kind = column.name, column.type
        if name == "id" or name.endswith("_id"):
            continue
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values = _read_columns(files, [name]).column(name).combine_chunks()
            per_row = pc.utf8_length(values).to_numpy(zero_copy_only=False)
        elif (
            pa.types.is_list(kind)
            and pa.types.is_struct(kind.value_type)
            and kind.value_type.get_field_index("content") >= 0
        ):
            messages = _read_columns(files, [name]).column(name).combine_chunks()
            content = pc.struct_field(pc.list_flatten(messages), "content")
            per_row = np.bincount(
                pc.list_parent_indices(messages).to_numpy(),
                weights=pc.utf8_length(content).to_numpy(zero_copy_only=False),
                minlength=len(messages),
            )
        else:
            continue
        if len(per_row) and per_row.max() > LABEL_MAX_CHARS:
            lengths[name] = per_row
    return lengths


def _cut_positions(folder: Path, manifest: DatasetManifest) -> Histogram | None:
    """C²-Syn: where each SYN response cuts the full harmful response, as a share of its length."""
    name = next((n for n, c in manifest.configs.items() if c.schema_name == "c2_group"), None)
    if name is None:
        return None
    groups = _read_columns(_config_files(folder, manifest, name), ["responses"]).to_pylist()
    by_cut: list[list[float]] = [[], [], [], []]
    for group in groups:
        responses = group["responses"]
        fhr = len(responses[-1]["text"])
        for r in responses:
            if r["kind"] == "SYN" and fhr:
                by_cut[r["cut_index"] - 1].append(r["cut_char"] / fhr)
    n = len(groups)
    title = f"cut position in the full harmful response (n={n} groups, {4 * n} cuts)"
    svg = _histogram_svg(
        by_cut, [f"SYN_{i}" for i in range(1, 5)], title, "share of the FHR before the cut", 20, "cuts"
    )
    return Histogram(title=title, n=n, svg=svg)


@dataclass
class SpanShare:
    n: int
    with_spans: int
    mean_share: float | None
    histogram: Histogram


def _toxic_spans(folder: Path, manifest: DatasetManifest) -> SpanShare | None:
    """PT-ALIGN: the share of each toxic response's characters marked as harmful spans."""
    name = next((n for n, c in manifest.configs.items() if c.schema_name == "safety_triple"), None)
    if name is None:
        return None
    triples = _read_columns(_config_files(folder, manifest, name), ["toxic", "toxic_spans"]).to_pylist()
    shares = [
        sum(s["end"] - s["start"] for s in t["toxic_spans"]) / len(t["toxic"]) for t in triples if t["toxic"]
    ]
    n = len(shares)
    title = f"share of the toxic response inside marked spans (n={n} triples)"
    return SpanShare(
        n=n,
        with_spans=sum(1 for t in triples if t["toxic_spans"]),
        mean_share=sum(shares) / n if n else None,
        histogram=Histogram(
            title, n, _histogram_svg([shares], ["triples"], title, "share in spans", 10, "triples")
        ),
    )


# ----------------------------------------------------------------------------- charts (SVG)
def _funnel_chart(manifest: DatasetManifest) -> Markup:
    """Rows kept, filtered and quarantined per stage, in pipeline order."""
    plt = pyplot()
    names = list(manifest.stages)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.2))
    ys = range(len(names))[::-1]
    left = [0] * len(names)
    for label, key, color in (
        ("kept", "rows_ok", "#4c9a6a"),
        ("filtered", "filtered", "#d9a33f"),
        ("quarantined", "quarantined", "#c0504d"),
    ):
        values = [getattr(manifest.stages[n], key) for n in names]
        ax.barh(list(ys), values, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(list(ys), names)
    ax.set_xlabel("rows entering the stage, by what became of them")
    ax.set_title(f"row funnel (input {manifest.counts.input} rows, output {manifest.counts.output})")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, not on them
    return _svg(fig)


def _histogram_svg(
    series: list[Any], labels: list[str], title: str, xlabel: str, bins: int = 15, unit: str = "rows"
) -> Markup:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 2.8))
    if any(len(s) for s in series):
        ax.hist(list(series), bins=bins, label=labels, stacked=len(series) > 1)
        if len(series) > 1:
            ax.legend(fontsize="x-small")
    else:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize="small")
    ax.set_xlabel(xlabel, fontsize="small")
    ax.set_ylabel(unit, fontsize="small")
    return _svg(fig)


def _svg(fig: Figure) -> Markup:
    """The figure as an inline <svg> element (text kept as text, no XML prolog or external DTD)."""
    plt = pyplot()
    buf = io.StringIO()
    fig.tight_layout()
    # Text stays <text> (searchable, selectable, small); fixed ids make the page reproducible.
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "safepref"}):
        fig.savefig(buf, format="svg", metadata=dict.fromkeys(("Format", "Type", "Creator", "Date")))
    plt.close(fig)
    text = buf.getvalue()
    return Markup(text[text.index("<svg") :])  # matplotlib escapes the labels it draws


def _template() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True)
    return env.from_string((resources.files("factory.dataset") / TEMPLATE).read_text(encoding="utf-8"))
