"""C²-Syn steps (Xu et al., arXiv 2407.16637): select, truncate, generate, safety-check, rank.

The pure functions here follow the reference code (`syn/synthesize.py`, `syn/process_data.py`);
deviations are named where they happen and listed in the dataset card.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any, ClassVar

from pydantic import PrivateAttr

from factory.backends.base import EMPTY_COMPLETION, yes_verdict
from factory.core.rows import is_ok
from factory.core.seeds import keyed_rng
from factory.steps.base import RowFailed, RowFiltered, SafeprefStep, add_usage, answer_text, count_event, mark
from factory.steps.c2syn.filter import select_fhr

# -- pure functions ------------------------------------------------------------------------------


def count_delimiters(text: str, delimiters: str) -> int:
    return len(delimiter_positions(text, delimiters))


@lru_cache(maxsize=16)
def _delimiter_pattern(delimiters: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(delimiters) + "]")


def delimiter_positions(text: str, delimiters: str) -> list[int]:
    return [m.start() for m in _delimiter_pattern(delimiters).finditer(text)]


def faithful_prefixes(text: str, t_k: int, delimiters: str, k: int = 4) -> list[str]:
    """The reference's `divide_response` for a given t_k, degenerate cases included.

    The reference walks the text per cut, counting delimiters, and stops right after the character
    at which the count equals i·t_k. For i·t_k >= 1 that is the (i·t_k)-th delimiter; for i·t_k == 0
    it is the first character unless that character is itself a delimiter (then the count never
    returns to 0 and the whole text is kept); for i·t_k < 0 or beyond the last delimiter, the whole text.
    """
    return _prefixes_at(text, delimiter_positions(text, delimiters), t_k, delimiters, k)


def _prefixes_at(text: str, positions: list[int], t_k: int, delimiters: str, k: int) -> list[str]:
    """`faithful_prefixes` given the text's delimiter positions (found once per row by `truncate`)."""
    prefixes = []
    for i in range(1, k + 1):
        target = i * t_k
        if target == 0:
            prefixes.append(text[:1] if text and text[0] not in delimiters else text)
        elif 0 < target <= len(positions):
            prefixes.append(text[: positions[target - 1] + 1])
        else:
            prefixes.append(text)
    return prefixes


def degenerate_kind(prefixes: list[str]) -> str | None:
    """The first of `DEGENERATE_KINDS` these prefixes show, or None when the cuts are usable."""
    visible = [len(p.strip()) for p in prefixes]
    if min(visible) == 0:
        return "empty"
    if min(visible) == 1:
        return "one_character"
    if any(b <= a for a, b in pairwise(len(p) for p in prefixes)):
        return "non_increasing"
    return None


@dataclass(frozen=True)
class Truncation:
    t: int
    t_k: int
    prefixes: list[str]
    openers: list[str]
    triggers: list[str]
    degenerate: str | None = None  # the first draw's degenerate kind (kept in faithful, re-drawn in strict)
    redrawn: bool = False  # strict mode replaced that draw by the other admissible t_k


def truncate(
    fhr: str,
    rng: random.Random,
    *,
    mode: str,
    delimiters: str,
    openers: list[str],
    triggers: list[str],
    k: int = 4,
) -> Truncation:
    """Cut `fhr` at k points: t_k = randint(t//k - 1, t//k), prefix_i ends at the (i·t_k)-th delimiter.

    faithful: exactly the reference, degenerate draws included. strict (default): a degenerate draw
    (`degenerate_kind`) is replaced by the other admissible t_k; if that one is degenerate too, the row
    is filtered with rule `degenerate_cuts_<kind>` (the first draw's kind). Other draws are the
    reference's, unchanged.
    """
    positions = delimiter_positions(fhr, delimiters)
    t = len(positions)
    t_k = rng.randint(t // k - 1, t // k)
    prefixes = _prefixes_at(fhr, positions, t_k, delimiters, k)
    kind = degenerate_kind(prefixes)
    redrawn = False
    if mode == "strict" and kind is not None:
        other = t // k - 1 if t_k == t // k else t // k
        candidate = _prefixes_at(fhr, positions, other, delimiters, k)
        if degenerate_kind(candidate) is not None:
            raise RowFiltered(f"degenerate_cuts_{kind}")
        t_k, prefixes, redrawn = other, candidate, True
    # Seeded draws over ordered lists (the reference used unseeded random.choice over sets).
    chosen_triggers = [rng.choice(triggers) for _ in range(k)]
    chosen_openers = [rng.choice(openers) for _ in range(k)]
    return Truncation(
        t=t,
        t_k=t_k,
        prefixes=prefixes,
        openers=chosen_openers,
        triggers=chosen_triggers,
        degenerate=kind,
        redrawn=redrawn,
    )


def assistant_prefill(opener: str, prefix: str, trigger: str) -> str:
    return f"{opener} {prefix} {trigger}"


def join_continuation(prefill: str, continuation: str) -> str:
    """Stored SYN text: the prefill followed by the model's continuation, with one separating space."""
    cont = continuation.rstrip()
    if not cont:
        return prefill
    if cont[0].isspace() or cont[0] in ",.;:!?'\")":
        return prefill + cont
    return f"{prefill} {cont}"


def contains_any(text: str, keywords: list[str]) -> bool:
    return any(k in text for k in keywords)


# -- steps ---------------------------------------------------------------------------------------


class C2Select(SafeprefStep):
    """Keyword + long-unsafe-response filter; picks the FHR. Input: PKU-SafeRLHF columns.

    Then, among the rows that pass, in source order: the optional dedup (`dedup_on`) and `keep_first`.
    """

    required: ClassVar[tuple[str, ...]] = (
        "prompt",
        "response_0",
        "response_1",
        "is_response_0_safe",
        "is_response_1_safe",
    )
    produced: ClassVar[tuple[str, ...]] = ("fhr",)

    # batches reach this (single-replica) stage in source order
    _kept: int = PrivateAttr(default=0)
    _seen: set[str] = PrivateAttr(default_factory=set)

    def load(self) -> None:
        super().load()
        self._kept = 0
        self._seen = set()

    def process_rows(self, rows: list[dict[str, Any]]) -> None:
        column = self.params.get("dedup_on")
        for row in rows:
            self.guarded(row, self.process_row)
            if column is None or not is_ok(row):
                continue
            # dedup among passing rows: a failing first occurrence must not hide a later valid one
            key = str(row.get(column))
            if key in self._seen:
                mark(row, "filtered", self.stage, f"duplicate_{column}")
            self._seen.add(key)
        self._kept = keep_first(rows, self.params.get("keep_first"), self._kept, self.stage)

    def process_row(self, row: dict[str, Any]) -> None:
        row["fhr"] = select_fhr(row, self.params["keywords"], self.params["min_words"])


def keep_first(rows: list[dict[str, Any]], cap: int | None, kept: int, stage: str) -> int:
    """Filter passing rows beyond the first `cap` (rule `over_keep_first`); returns the new count kept.

    The reference keeps the first N rows that pass, in source order; batches reach a single-replica
    stage in that order, so a running count across batches is enough.
    """
    if cap is None:
        return kept
    for row in rows:
        if not is_ok(row):
            continue
        if kept >= cap:
            mark(row, "filtered", stage, "over_keep_first")
        else:
            kept += 1
    return kept


class C2Truncate(SafeprefStep):
    """Cuts the FHR at 4 points and draws an opener and a trigger per cut (seeded per row).

    `keep_first` here counts rows whose cuts are usable, so a strict run still yields N groups when
    the source has them (the reference, which never filters a cut, keeps its first N at selection).
    """

    required: ClassVar[tuple[str, ...]] = ("fhr",)
    produced: ClassVar[tuple[str, ...]] = ("truncation",)

    _kept: int = PrivateAttr(default=0)

    def load(self) -> None:
        super().load()
        self._kept = 0

    def process_rows(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.guarded(row, self.process_row)
        self._kept = keep_first(rows, self.params.get("keep_first"), self._kept, self.stage)

    def process_row(self, row: dict[str, Any]) -> None:
        p = self.params
        tr = truncate(
            row["fhr"],
            keyed_rng("c2syn", self.seed, row["_sp_id"]),
            mode=p["mode"],
            delimiters=p["delimiters"],
            openers=p["openers"],
            triggers=p["triggers"],
        )
        if tr.degenerate is not None:  # strict re-drew it; faithful kept it as the reference does
            event = "cuts_redrawn" if tr.redrawn else "cuts_degenerate_kept"
            count_event(row, self.stage, f"{event}_{tr.degenerate}")
        row["truncation"] = json.dumps(
            {
                "mode": p["mode"],
                "t": tr.t,
                "t_k": tr.t_k,
                "cuts": [len(prefix) for prefix in tr.prefixes],  # prefix_i = fhr[:cut_i]
                "openers": tr.openers,
                "triggers": tr.triggers,
            }
        )


class C2Generate(SafeprefStep):
    """Generates SR for the bare prompt and continues the 4 open assistant turns ending in a trigger."""

    required: ClassVar[tuple[str, ...]] = ("prompt", "fhr", "truncation")
    produced: ClassVar[tuple[str, ...]] = ("sr", "continuations")

    def process_rows(self, rows: list[dict[str, Any]]) -> None:
        from factory.backends import ChatRequest

        params = self.decoding()
        system = self.params.get("system_prompt")
        head = [{"role": "system", "content": system}] if system else []
        requests = []
        for row in rows:
            tr = json.loads(row["truncation"])
            user = [*head, {"role": "user", "content": row["prompt"]}]
            requests.append(ChatRequest(messages=user, params=params))
            prefixes = [row["fhr"][:cut] for cut in tr["cuts"]]
            for opener, prefix, trigger in zip(tr["openers"], prefixes, tr["triggers"], strict=True):
                prefill = assistant_prefill(opener, prefix, trigger)
                requests.append(
                    ChatRequest(messages=[*user, {"role": "assistant", "content": prefill}], params=params)
                )
        completions = self.backend.generate(requests)
        for i, row in enumerate(rows):
            self.guarded(row, self._store, completions[i * 5 : i * 5 + 5])

    def _store(self, row: dict[str, Any], completions: list[Any]) -> None:
        add_usage(row, self.stage, completions)
        texts = [answer_text(c) for c in completions]
        row["sr"] = texts[0].strip()
        row["continuations"] = texts[1:]


class C2SafetyCheck(SafeprefStep):
    """Checks that SR is safe; drops the group or re-generates SR (sampling) up to N times."""

    required: ClassVar[tuple[str, ...]] = ("prompt", "sr")
    produced: ClassVar[tuple[str, ...]] = ("sr_checks",)

    def process_rows(self, rows: list[dict[str, Any]]) -> None:
        p = self.params
        pending = list(rows)
        for row in rows:
            row["sr_checks"] = 0
        for attempt in range(p["max_regenerations"] + 1):
            verdicts = self._judge(pending)
            unsafe = []
            for row, (safe, failure) in zip(pending, verdicts, strict=True):
                row["sr_checks"] += 1
                if failure is not None:  # the judge gave no answer: not a verdict, so not a filter
                    mark(row, "quarantined", self.stage, f"SR judge failed: {failure.error}", failure.raw)
                elif not safe:
                    unsafe.append(row)
            if not unsafe:
                return
            if p["action"] == "drop" or attempt == p["max_regenerations"]:
                for row in unsafe:
                    mark(row, "filtered", self.stage, "unsafe_safe_response")
                return
            pending = self._regenerate(unsafe, attempt)

    def _judge(self, rows: list[dict[str, Any]]) -> list[tuple[bool, Any]]:
        """(safe, None) per row, or (False, the failed completion) when the LLM judge failed."""
        if self.params["judge"] == "keyword":
            return [(contains_any(r["sr"], self.params["keywords"]), None) for r in rows]
        from factory.backends import ChatRequest
        from schemas.generation import merged_decoding
        from schemas.methods.c2syn import SR_JUDGE_DECODING

        template = self.params.get("judge_template") or "c2syn/sr_judge.jinja"
        assert self.backend_spec is not None
        judge_params = merged_decoding(self.backend_spec.get("generation"), SR_JUDGE_DECODING)
        requests = [
            ChatRequest(
                messages=[
                    {
                        "role": "user",
                        "content": self.render(template, {"request": r["prompt"], "response": r["sr"]}),
                    }
                ],
                params=judge_params,
            )
            for r in rows
        ]
        out = self.backend.generate(requests)
        for r, c in zip(rows, out, strict=True):
            add_usage(r, self.stage, [c])
        # exact matching, as the reference judge: only a stripped, lower-cased "yes" counts as safe
        return [(False, c) if (yes := yes_verdict(c)) is None else (yes, None) for c in out]

    def _regenerate(self, rows: list[dict[str, Any]], attempt: int) -> list[dict[str, Any]]:
        """Sample a new SR for each row; returns the rows that got one (a failed call quarantines)."""
        from factory.backends import ChatRequest
        from schemas.generation import merged_decoding
        from schemas.methods.c2syn import SR_REGENERATE_DECODING

        assert self.backend_spec is not None
        params = merged_decoding(
            self.backend_spec.get("generation"), {**SR_REGENERATE_DECODING, "seed": self.seed + attempt + 1}
        )
        requests = [
            ChatRequest(messages=[{"role": "user", "content": r["prompt"]}], params=params) for r in rows
        ]
        renewed = []
        for row, c in zip(rows, self.backend.generate(requests), strict=True):
            add_usage(row, self.stage, [c])
            if c.error is not None or c.empty:
                reason = f"SR re-generation failed: {c.error or EMPTY_COMPLETION}"
                mark(row, "quarantined", self.stage, reason, c.raw if c.raw is not None else c.text)
                continue
            row["sr"] = c.text.strip()
            count_event(row, self.stage, "sr_regenerated")
            renewed.append(row)
        return renewed


class C2Rank(SafeprefStep):
    """Assembles the ranked group SR ≻ SYN_1 ≻ … ≻ SYN_4 ≻ FHR and validates it (C2Group).

    The group itself is not passed on (it would copy every text again through the pipeline): the
    exporters rebuild it from the same columns with `build_group`, which is deterministic.
    """

    required: ClassVar[tuple[str, ...]] = ("prompt", "fhr", "truncation", "sr", "continuations")
    produced: ClassVar[tuple[str, ...]] = ("group_id",)

    def process_row(self, row: dict[str, Any]) -> None:
        from pydantic import ValidationError

        from factory.core.config_files import format_validation_error
        from schemas.records import C2Group

        group = build_group(row, self.seed)
        try:
            C2Group.model_validate({**group, "provenance": _placeholder_provenance()})
        except ValidationError as exc:
            raise RowFailed(f"invalid group: {format_validation_error(exc)}", json.dumps(group)) from None
        row["group_id"] = group["group_id"]


@lru_cache(maxsize=1)
def _placeholder_provenance() -> Any:
    """Provenance is run-level (the exporter adds the real one); validating the rest needs a stand-in,
    validated once."""
    from schemas.provenance import Provenance

    return Provenance(
        recipe_name="check", recipe_hash="0" * 64, generator_model="check", seed=0, source_id="check"
    )


def build_group(row: dict[str, Any], seed: int) -> dict[str, Any]:
    """The C2Group fields (without provenance, which the exporter adds from the run context)."""
    tr = json.loads(row["truncation"])
    fhr = row["fhr"]
    responses: list[dict[str, Any]] = [{"rank": 1, "kind": "SR", "text": row["sr"]}]
    for i, (opener, cut, trigger, cont) in enumerate(
        zip(tr["openers"], tr["cuts"], tr["triggers"], row["continuations"], strict=True), start=1
    ):
        prefix = fhr[:cut]
        prefill = assistant_prefill(opener, prefix, trigger)
        responses.append(
            {
                "rank": i + 1,
                "kind": "SYN",
                "text": join_continuation(prefill, cont),
                "cut_index": i,
                "cut_char": cut,
                "opener": opener,
                "prefix": prefix,
                "trigger": trigger,
                "continuation": cont,
            }
        )
    responses.append({"rank": 6, "kind": "FHR", "text": fhr})
    return {
        "group_id": f"g-{row['_sp_id']}",
        "source_id": str(row["_sp_id"]),
        "prompt": row["prompt"],
        "responses": responses,
        "delimiter_count": tr["t"],
        "t_k": tr["t_k"],
        "truncation_mode": tr["mode"],
        "seed": seed,
    }
