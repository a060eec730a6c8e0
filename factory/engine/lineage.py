"""Where a row came from: the one reading of row ids across expanding steps.

A source row's id is its own (its index, or the source's `id_field`, which may itself hold the
separator); a row that an expanding step made from row `P` has id `P/i` (factory.core.rows.child_row).
So the ids from a row up to its source row are read by cutting the last `/i`, until a source id is
reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from factory.core.rows import EXPANSION_SEP

if TYPE_CHECKING:
    from factory.core.distilabel_compat import LeafRows


class Lineage:
    """The source rows of a run, in source order, and how every later row descends from them."""

    def __init__(self, source_ids: Iterable[str] = ()) -> None:
        self.position = {rid: i for i, rid in enumerate(source_ids)}

    def __len__(self) -> int:
        return len(self.position)

    def chain(self, row_id: str) -> list[str]:
        """`row_id` and its ancestors, nearest first, ending at its source row (or at the shortest id
        when it has none among the source rows): `3/1/0` -> [`3/1/0`, `3/1`, `3`]."""
        chain = [row_id]
        while row_id not in self.position and EXPANSION_SEP in row_id:
            row_id = row_id.rsplit(EXPANSION_SEP, 1)[0]
            chain.append(row_id)
        return chain

    def at_depth(self, row_id: str, depth: int) -> str:
        """The id this row, or its ancestor, had after `depth` expansions (itself when it has had no more)."""
        chain = self.chain(row_id)
        expansions = len(chain) - 1
        return chain[expansions - depth] if expansions > depth else row_id

    def expansions(self, final_ids: list[str]) -> tuple[int, int]:
        """(created, expanded): rows made by expanding steps and the parents they replaced. Every final
        id must descend from a source row, once, and every source row must be accounted for."""
        final = set(final_ids)
        if len(final) != len(final_ids):
            raise RuntimeError("a row id appears twice in the pipeline's output")
        created: set[str] = set()
        for rid in final:
            chain = self.chain(rid)
            if chain[-1] not in self.position:
                raise RuntimeError(f"row {chain[-1]!r} has no source row")
            created.update(chain[:-1])
        parents = {c.rsplit(EXPANSION_SEP, 1)[0] for c in created}
        missing = [rid for rid in self.position if rid not in final and rid not in parents]
        if missing:
            raise RuntimeError(f"{len(missing)} rows vanished inside the pipeline (first: {missing[0]})")
        return len(created), len(parents)

    def order_key(self, row_id: str) -> tuple[int, tuple[int, ...]]:
        """Where a row goes in source order: its source row's position, then its child index at each
        expansion, as numbers (`P/9` before `P/10`; compared as text, `P/10` came first)."""
        chain = self.chain(row_id)
        if chain[-1] not in self.position:  # no source row: `expansions` refuses it
            return (-1, ())
        children = tuple(int(c.rsplit(EXPANSION_SEP, 1)[1]) for c in reversed(chain[:-1]))
        return (self.position[chain[-1]], children)

    def in_source_order(self, leaf: LeafRows, ids: list[str]) -> Iterator[dict[str, Any]]:
        """Stream the pipeline's rows (ids: their row ids) in source order: distilabel keeps it, and
        the rows stream file by file; only rows out of that order are all loaded to be re-ordered."""
        keys = [self.order_key(rid) for rid in ids]
        if any(b < a for a, b in zip(keys, keys[1:], strict=False)):
            return leaf.rows(sorted(range(len(keys)), key=keys.__getitem__))
        return leaf.rows()
