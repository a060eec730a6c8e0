"""Accounting for every row: which step crashed on it, where it ended, what each stage did.

Every input row ends as output, filtered (by a rule) or quarantined (by a stage), and the manifest's
counts add up (schemas.manifest.RowCounts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.core.errors import RunFailed
from factory.core.rows import RAW, REASON, ROW_ID, STAGE, STATUS, USAGE, read_usage
from factory.core.sources import SOURCE_STAGE
from factory.engine.lineage import Lineage
from factory.engine.recipe import LoadedRecipe
from schemas.manifest import RowCounts, StageStats

if TYPE_CHECKING:
    from factory.export.writer import WriteResult


class RunAccounts:
    """The pipeline's rows, accounted for: every one descends from a source row, once, and no source
    row vanished (checked before anything is written); streamed in source order with their final
    status, counted per stage (`tally`) and in all (`counts`)."""

    def __init__(self, loaded: LoadedRecipe, steps: list[Any], lineage: Lineage, dataset: Any) -> None:
        self.dataset, self.steps, self.lineage = dataset, steps, lineage
        self.final_ids = [str(x) for x in dataset[ROW_ID]]
        self.created, self.expanded = lineage.expansions(self.final_ids)
        self.tally = StageTally(loaded, steps, lineage)

    def rows(self) -> Iterator[dict[str, Any]]:
        for row in self.lineage.in_source_order(self.dataset, self.final_ids):
            row = finalise(row, self.steps)
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


def finalise(row: dict[str, Any], steps: list[Any]) -> dict[str, Any]:
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

    def __init__(self, loaded: LoadedRecipe, steps: list[Any], lineage: Lineage | None = None) -> None:
        self.lineage = lineage or Lineage()
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
        stop = self.position.get(str(stage)) if status != "ok" else None
        last = len(self.names) - 1 if stop is None else stop
        for i in range(last + 1):
            # the id this row (or its ancestor) had while stage i ran
            at = self.lineage.at_depth(row_id, self.depth[i])
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
