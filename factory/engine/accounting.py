"""Accounting for every row: which step crashed on it, where it ended, what each stage did.

Every input row ends as output, filtered (by a rule) or quarantined (by a stage), and the manifest's
counts add up (schemas.manifest.RowCounts).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.core.errors import RunFailed
from factory.core.rows import RAW, REASON, ROW_ID, STAGE, STATUS, USAGE, read_usage
from factory.core.sources import SOURCE_STAGE
from factory.engine.lineage import Lineage
from factory.engine.recipe import LoadedRecipe
from schemas.manifest import RowCounts, StageStats

if TYPE_CHECKING:
    from factory.core.distilabel_compat import LeafRows
    from factory.export.writer import WriteResult


class RunAccounts:
    """The pipeline's rows, accounted for: every one descends from a source row, once, and no source
    row vanished (checked before anything is written); streamed in source order with their final
    status, counted per stage (`tally`) and in all (`counts`)."""

    def __init__(self, loaded: LoadedRecipe, steps: list[Any], lineage: Lineage, dataset: LeafRows) -> None:
        self.dataset, self.steps, self.lineage = dataset, steps, lineage
        self.final_ids = [str(x) for x in dataset.column(ROW_ID)]
        self.created, self.expanded = lineage.expansions(self.final_ids)
        self.tally = StageTally(loaded, steps, lineage)

    def rows(self) -> Iterator[dict[str, Any]]:
        finalise = CrashCheck(self.steps)
        for row in self.lineage.in_source_order(self.dataset, self.final_ids):
            row = finalise(row)
            self.tally.add(row)
            yield row

    def counts(self, written: WriteResult) -> RowCounts:
        return RowCounts(
            input=len(self.lineage),
            created=self.created,
            expanded=self.expanded,
            output=written.output_rows,
            filtered=written.filtered,
            quarantined=written.quarantined,
        )


def raise_if_no_output(written: WriteResult, out_dir: Path) -> None:
    """A run with no output because of errors (not of the recipe's filters) failed. It gets no
    manifest: a run with nothing to show is not finished, so the next one starts afresh (its finished
    requests come from the cache)."""
    quarantined: int = sum(written.quarantined.values())
    filtered: int = sum(written.filtered.values())
    if written.output_rows == 0 and quarantined > filtered:
        raise RunFailed(
            f"no output: {quarantined} rows quarantined (stage {', '.join(sorted(written.quarantined))}),"
            f" {filtered} filtered; the reasons are in {out_dir / 'quarantine' / 'rows.parquet'}"
        )


class CrashCheck:
    """Quarantines a row that a crashed step emptied (distilabel keeps a failed batch's input columns
    and sets its output columns to None). The crashed step is the first whose own columns are None;
    `_sp_status` is every safepref step's output, so it only decides when no own column does."""

    def __init__(self, steps: list[Any]) -> None:
        # each step's own columns, read once (`outputs` is built on every access)
        self.own = [(s, [c for c in s.outputs if c not in _OPTIONAL and c != STATUS]) for s in steps]
        # the step blamed when only bookkeeping was emptied: the first without own columns, else the last
        self.bookkeeping_only = next((s for s, own in self.own if not own), steps[-1]) if steps else None
        self.columns = [c for _, own in self.own for c in own]

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        status = row.get(STATUS)
        if status in ("filtered", "quarantined"):
            return row
        if status is not None and not any(map(_is_none, map(row.get, self.columns))):
            return row  # nothing emptied (every row of a run that did not crash)
        crashed = next((s for s, own in self.own if any(row.get(c) is None for c in own)), None)
        if crashed is None and row.get(STATUS) is None:  # only bookkeeping was emptied
            crashed = self.bookkeeping_only
        if crashed is not None:
            row[STATUS], row[STAGE] = "quarantined", crashed.name
            row[REASON] = "step failed: distilabel replaced its outputs with None (see the run log)"
        return row


_OPTIONAL = frozenset({STAGE, REASON, RAW, USAGE})  # bookkeeping that is legitimately None on ok rows
_is_none = partial(operator.is_, None)
_USAGE_COUNTS = {  # StageStats field <- key of a row's usage entry (factory.core.rows.add_usage)
    "llm_calls": "calls",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "cached_calls": "cached",
}


class StageTally:
    """Per-stage counts, derived from where each row ended (a row passed every stage before its last).

    Rows made by an expanding stage carry their parent's id as a prefix: before that stage they are
    counted as their parent, once. Counts are kept in plain ints (a pydantic attribute update per row
    and stage cost more than the counting at paper scale) and become StageStats in `stats`.
    """

    def __init__(self, loaded: LoadedRecipe, steps: list[Any], lineage: Lineage | None = None) -> None:
        self.lineage = lineage or Lineage()
        self.names = [s.name for s in loaded.recipe.stages]
        self.position = {n: i for i, n in enumerate(self.names)}
        self.step_names = [s.step for s in loaded.recipe.stages]
        expanding = [i for i, step in enumerate(steps) if getattr(step, "expands", False)]
        # how many expansions a row id has gone through when it enters stage i
        self.depth = [sum(1 for e in expanding if e < i) for i in range(len(self.names))]
        self.seen_in: list[set[str]] = [set() for _ in self.names]
        self.seen_ok: list[set[str]] = [set() for _ in self.names]
        self.rows_in = [0] * len(self.names)
        self.rows_ok = [0] * len(self.names)
        self.filtered = [0] * len(self.names)
        self.quarantined = [0] * len(self.names)
        self.usage: dict[str, dict[str, int]] = {n: dict.fromkeys(_USAGE_COUNTS, 0) for n in self.names}
        self.events: dict[str, dict[str, int]] = {n: {} for n in self.names}
        self.spans: dict[str, tuple[float, float]] = {}  # stage -> wall times of first request, last answer

    def add(self, row: dict[str, Any]) -> None:
        status, stage = row.get(STATUS), row.get(STAGE)
        if stage == SOURCE_STAGE:
            return
        row_id = str(row.get(ROW_ID))
        stop = self.position.get(str(stage)) if status != "ok" else None
        last = len(self.names) - 1 if stop is None else stop
        for i in range(last + 1):
            # the id this row (or its ancestor) had while stage i ran
            at = self.lineage.at_depth(row_id, self.depth[i])
            seen_in = self.seen_in[i]
            if at not in seen_in:
                seen_in.add(at)
                self.rows_in[i] += 1
            if stop is None or i < stop:
                seen_ok = self.seen_ok[i]
                if at not in seen_ok:
                    seen_ok.add(at)
                    self.rows_ok[i] += 1
        if stop is not None:
            if status == "filtered":
                self.filtered[stop] += 1
            else:
                self.quarantined[stop] += 1
        usage = row.get(USAGE)
        if not usage:
            return
        for name, entry in json.loads(usage).items():
            if name in self.usage:
                used, counts, events = read_usage(entry), self.usage[name], self.events[name]
                for field, key in _USAGE_COUNTS.items():
                    counts[field] += used[key]
                for event, n in used["events"].items():
                    events[event] = events.get(event, 0) + n
                if used["started"] is not None and used["finished"] is not None:
                    self._span(name, used["started"], used["finished"])

    def _span(self, name: str, started: float, finished: float) -> None:
        """Widen the stage's generation span to cover a row's fresh requests."""
        first, last = self.spans.get(name, (started, finished))
        self.spans[name] = min(first, started), max(last, finished)

    @property
    def stats(self) -> dict[str, StageStats]:
        out = {}
        for i, name in enumerate(self.names):
            span = self.spans.get(name)
            out[name] = StageStats(
                step=self.step_names[i],
                rows_in=self.rows_in[i],
                rows_ok=self.rows_ok[i],
                filtered=self.filtered[i],
                quarantined=self.quarantined[i],
                **self.usage[name],
                events=dict(self.events[name]),
                generation_seconds=round(span[1] - span[0], 3) if span is not None else None,
            )
        return out
