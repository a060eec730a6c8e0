"""Row ids across expanding steps, read in one place (factory.engine.lineage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.core.distilabel_compat import LeafRows
from factory.engine.lineage import Lineage


def test_a_row_descends_from_its_source_row() -> None:
    lineage = Lineage(["0", "1", "2"])
    assert lineage.chain("1/0/2") == ["1/0/2", "1/0", "1"]
    assert [lineage.at_depth("1/0/2", d) for d in (0, 1, 2, 3)] == ["1", "1/0", "1/0/2", "1/0/2"]


def test_a_source_id_holding_the_separator_is_a_root_not_an_expansion() -> None:
    lineage = Lineage(["docs/a", "docs/b"])  # e.g. a source's id_field
    assert lineage.chain("docs/a/3") == ["docs/a/3", "docs/a"]
    assert lineage.at_depth("docs/a/3", 0) == "docs/a" and lineage.at_depth("docs/a", 0) == "docs/a"
    assert lineage.expansions(["docs/a/0", "docs/a/1", "docs/b"]) == (2, 1)


def test_expansions_count_created_and_replaced_rows() -> None:
    lineage = Lineage(["0", "1"])
    # 0 -> 0/0, 0/1; 0/1 -> 0/1/0; 1 kept
    assert lineage.expansions(["0/0", "0/1/0", "1"]) == (3, 2)


@pytest.mark.parametrize(
    ("final", "message"),
    [
        (["0", "0"], "appears twice"),
        (["0", "9/1"], "has no source row"),
        (["0"], "1 rows vanished inside the pipeline"),
    ],
)
def test_a_row_that_is_lost_duplicated_or_invented_is_a_bug(final: list[str], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        Lineage(["0", "1"]).expansions(final)


def test_children_are_ordered_by_their_index_as_a_number() -> None:
    lineage = Lineage(["P", "Q"])
    ids = ["P/2", "P/9", "P/10", "P/10/0", "P/10/11", "Q", "R/1"]  # R: no source row, refused elsewhere
    keys = [lineage.order_key(i) for i in ids[:-1]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert lineage.order_key("P/10/11") == (0, (10, 11)) and lineage.order_key("R/1") == (-1, ())


def test_rows_out_of_source_order_come_back_in_it_children_by_index(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = ["Q/0", *(f"P/{i}" for i in range(12))]  # PT-ALIGN-like: one parent, 12 children
    pq.write_table(pa.Table.from_pylist([{"_sp_id": i} for i in ids]), tmp_path / "00001.parquet")
    rows = Lineage(["P", "Q"]).in_source_order(LeafRows([tmp_path / "00001.parquet"]), ids)
    assert [r["_sp_id"] for r in rows] == [*(f"P/{i}" for i in range(12)), "Q/0"]
