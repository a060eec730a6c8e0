"""Shares of C²-Syn truncation outcomes per degenerate kind on a PKU-SafeRLHF-schema file.

    python bench/c2syn_truncation.py ROWS.jsonl

Rows are selected as `c2syn.select` does (keyword + unsafe answer of more than 80 words; FHR as the
reference picks it). t_k takes each of its two admissible values with probability 1/2, so the shares
are exact expectations over the draw, not one seed's sample. Reported: the share of rows `strict`
re-draws and filters per kind (empty, one-character, non-increasing), and the share whose kept draw
puts the fourth cut at the end of the answer (kept, as in the reference).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from factory.core.rows import RowFiltered
from factory.steps.c2syn.filter import select_fhr
from factory.steps.c2syn.steps import count_delimiters, degenerate_kind, faithful_prefixes
from schemas.methods.c2syn import C2_DELIMITERS, DEGENERATE_KINDS, C2SelectParams


def outcome_shares(fhrs: list[str]) -> dict[str, float]:
    """Expected share of rows per outcome: `redrawn_<kind>`, `filtered_<kind>`, `whole_answer_cut_4`."""
    totals = {f"{o}_{k}": 0.0 for o in ("redrawn", "filtered") for k in DEGENERATE_KINDS}
    totals["whole_answer_cut_4"] = 0.0
    for fhr in fhrs:
        t = count_delimiters(fhr, C2_DELIMITERS)
        draws = (t // 4 - 1, t // 4)
        for t_k, other in (draws, draws[::-1]):
            prefixes = faithful_prefixes(fhr, t_k, C2_DELIMITERS)
            kind = degenerate_kind(prefixes)
            if kind is not None:
                replacement = faithful_prefixes(fhr, other, C2_DELIMITERS)
                if degenerate_kind(replacement) is None:
                    totals[f"redrawn_{kind}"] += 0.5
                    prefixes = replacement
                else:
                    totals[f"filtered_{kind}"] += 0.5
                    continue
            totals["whole_answer_cut_4"] += 0.5 * (prefixes[-1] == fhr)
    return {k: v / len(fhrs) for k, v in totals.items()} if fhrs else totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path, help="a .jsonl file in the PKU-SafeRLHF schema")
    args = parser.parse_args()
    select = C2SelectParams()
    fhrs = []
    lines = args.rows.read_text(encoding="utf-8").splitlines()
    for line in lines:
        with contextlib.suppress(RowFiltered):  # a row the filter drops is not a C²-Syn row
            fhrs.append(select_fhr(json.loads(line), select.keywords, select.min_words))
    print(f"rows read {len(lines):,}, selected {len(fhrs):,}")
    for name, share in outcome_shares(fhrs).items():
        print(f"{name:<28} {share:8.2%}")


if __name__ == "__main__":
    main()
