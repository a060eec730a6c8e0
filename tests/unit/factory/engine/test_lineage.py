"""Row ids across expanding steps, read in one place (factory.engine.lineage)."""

from __future__ import annotations

import pytest

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
