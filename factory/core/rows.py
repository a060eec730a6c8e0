"""Row bookkeeping shared by steps, the engine and the writer (no heavy imports).

Every row carries `_sp_id` (stable id), `_sp_status` (ok | filtered | quarantined), `_sp_stage`,
`_sp_reason` (filter rule or error), `_sp_raw` (raw LLM output of a quarantined row) and `_sp_usage`.
"""

import json
from collections.abc import Sequence
from typing import Any

from schemas.columns import is_bookkeeping

STATUS = "_sp_status"
STAGE = "_sp_stage"
REASON = "_sp_reason"
RAW = "_sp_raw"
USAGE = "_sp_usage"
ROW_ID = "_sp_id"
BOOKKEEPING = (
    ROW_ID,
    STATUS,
    STAGE,
    REASON,
    RAW,
    USAGE,
)  # each starts with schemas.columns.BOOKKEEPING_PREFIX


def own_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The row's columns without the bookkeeping: what a template or an expression sees."""
    return {k: v for k, v in row.items() if not is_bookkeeping(k)}


def response_key(value: Any) -> str:
    """What two responses are compared by: their text without surrounding whitespace (another value:
    its repr). A rank keeps one of each; a pair never opposes two."""
    return value.strip() if isinstance(value, str) else repr(value)


class RowFiltered(Exception):
    """Raised by a step for a row that a rule removes (not an error)."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


class RowFailed(Exception):
    """Raised by a step for a row whose processing failed; `raw` keeps the LLM text that caused it."""

    def __init__(self, reason: str, raw: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def is_ok(row: dict[str, Any]) -> bool:
    return row.get(STATUS) == "ok"


def add_usage(row: dict[str, Any], stage: str, completions: Sequence[Any]) -> None:
    """Accumulate the LLM usage of `completions` on the row (`_sp_usage`, a JSON string: stage ->
    {calls, prompt_tokens, completion_tokens, cached, events, started, finished}; `started`/`finished`:
    wall times of the first fresh request sent and the last fresh answer received, None without any)."""
    usage, entry = _usage_entry(row, stage)
    started, finished = entry["started"], entry["finished"]
    for x in completions:  # one pass: a row of a generate stage has five
        entry["calls"] += 1
        entry["prompt_tokens"] += x.prompt_tokens
        entry["completion_tokens"] += x.completion_tokens
        if getattr(x, "cached", False):
            entry["cached"] += 1
        # fresh answers carry their call's wall times: the engine spans a stage's generation over its rows
        sent, got = getattr(x, "sent_at", None), getattr(x, "received_at", None)
        if sent is not None and (started is None or sent < started):
            started = sent
        if got is not None and (finished is None or got > finished):
            finished = got
    entry["started"], entry["finished"] = started, finished
    row[USAGE] = json.dumps(usage, sort_keys=True)


def count_event(row: dict[str, Any], stage: str, event: str, n: int = 1) -> None:
    """Count something a stage did to the row that is neither a filter nor a failure (e.g. a re-draw
    or a re-generation); the manifest and the card sum them per stage."""
    usage, entry = _usage_entry(row, stage)
    entry["events"][event] = entry["events"].get(event, 0) + n
    row[USAGE] = json.dumps(usage, sort_keys=True)


def read_usage(entry: Any) -> dict[str, Any]:
    """One stage's usage entry with every key present."""
    out: dict[str, Any] = {
        "calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached": 0,
        "events": {},
        "started": None,
        "finished": None,
    }
    if isinstance(entry, dict):
        out.update(entry)
    return out


def _usage_entry(row: dict[str, Any], stage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    usage = json.loads(row.get(USAGE) or "{}")
    usage[stage] = read_usage(usage.get(stage))
    return usage, usage[stage]


EXPANSION_SEP = "/"


def child_row(parent: dict[str, Any], index: int, **fields: Any) -> dict[str, Any]:
    """A row created from `parent` (id `parent/index`), inheriting its columns and status `ok`.

    The parent's LLM usage stays on its first child only, so usage is not multiplied by the fan-out.
    """
    child = {**parent, **fields}
    child[ROW_ID] = f"{parent[ROW_ID]}{EXPANSION_SEP}{index}"
    child[STATUS], child[STAGE], child[REASON], child[RAW] = "ok", None, None, None
    if index > 0:
        child[USAGE] = None
    return child


def mark(row: dict[str, Any], status: str, stage: str, reason: str, raw: str | None = None) -> None:
    row[STATUS] = status
    row[STAGE] = stage
    row[REASON] = reason
    row[RAW] = raw


def parse_bool(value: Any) -> bool:
    """A source's boolean flag: bool, 0/1, or "true"/"false" (any case); ValueError otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"not a boolean: {value!r}")
