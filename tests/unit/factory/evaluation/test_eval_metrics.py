"""Corr@k / Corr_mean arithmetic on fixed verdicts, and the confidence intervals."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.evaluation.c2_eval import SAMPLE_KEY, C2Settings, corr_results
from factory.evaluation.confidence import row_bootstrap, wilson
from factory.evaluation.eval_data import C2Row
from factory.evaluation.sample_store import JsonlStore
from schemas.eval_report import C2ModelResult, ModelInfo

MODEL = ModelInfo(spec="bundled", slug="bundled", kind="bundled", model_id="m")
ROWS = [C2Row(row_id=str(i), request=f"q{i}", fhr=f"a{i}") for i in range(3)]


def _verdicts(tmp_path: Path, table: dict[tuple[str, int], list[bool | None]]) -> JsonlStore:
    store = JsonlStore(tmp_path / "verdicts.jsonl", SAMPLE_KEY)
    store.append(
        {"row_id": row, "k": k, "sample": s, "verdict": v}
        for (row, k), verdicts in table.items()
        for s, v in enumerate(verdicts)
        if v is not None  # None: the path has no verdict (failed)
    )
    return store


def test_corr_at_k_is_the_share_of_yes_over_all_paths_of_that_k(tmp_path: Path) -> None:
    settings = C2Settings(models=["bundled"], ks=(10, 20), samples=2, rows=3)
    store = _verdicts(
        tmp_path,
        {
            ("0", 10): [True, True],
            ("1", 10): [True, False],
            ("2", 10): [False, False],
            ("0", 20): [True, False],
            ("1", 20): [False, False],
            ("2", 20): [False, False],
        },
    )
    result = corr_results(settings, ROWS, MODEL, store)
    assert result.corr_at == {10: pytest.approx(3 / 6), 20: pytest.approx(1 / 6)}
    assert result.corr_mean == pytest.approx((3 / 6 + 1 / 6) / 2)
    assert result.judged_at == {10: 6, 20: 6} and result.failed_at == {10: 0, 20: 0}
    for k in (10, 20):
        ci = result.ci_at[k]
        assert ci is not None and ci.low <= result.corr_at[k] <= ci.high  # type: ignore[operator]
    assert result.corr_mean_ci is not None


def test_missing_verdicts_are_failed_not_no(tmp_path: Path) -> None:
    settings = C2Settings(models=["bundled"], ks=(10, 20), samples=2, rows=3)
    store = _verdicts(
        tmp_path,
        {
            ("0", 10): [True, None],
            ("1", 10): [False, None],
            ("2", 10): [None, None],
            ("0", 20): [None, None],
            ("1", 20): [None, None],
            ("2", 20): [None, None],
        },
    )
    result = corr_results(settings, ROWS, MODEL, store)
    assert result.corr_at == {10: 0.5, 20: None}
    assert result.judged_at == {10: 2, 20: 0} and result.failed_at == {10: 4, 20: 6}
    assert result.corr_mean is None and result.corr_mean_ci is None and result.ci_at[20] is None


def test_report_keys_corr_at_by_k_in_json(tmp_path: Path) -> None:
    settings = C2Settings(models=["bundled"], ks=(10,), samples=1, rows=3)
    store = _verdicts(tmp_path, {("0", 10): [True], ("1", 10): [False], ("2", 10): [False]})
    result = corr_results(settings, ROWS, MODEL, store)
    dumped = result.model_dump(mode="json")
    assert dumped["corr_at"] == {"10": pytest.approx(1 / 3)}
    assert C2ModelResult.model_validate_json(result.model_dump_json()).corr_at == result.corr_at


def test_wilson_matches_the_closed_form() -> None:
    ci = wilson(5, 10, 0.95)
    assert ci is not None
    assert ci.low == pytest.approx(0.2366, abs=1e-4) and ci.high == pytest.approx(0.7634, abs=1e-4)
    zero = wilson(0, 20, 0.95)
    assert zero is not None and zero.low == 0.0 and zero.high == pytest.approx(0.1611, abs=1e-4)
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_row_bootstrap_is_seeded_and_degenerate_for_identical_rows() -> None:
    same, mean = row_bootstrap([[1, 0]] * 4, [[2, 2]] * 4)
    assert [(c.low, c.high) for c in same if c] == [(0.5, 0.5), (0.0, 0.0)]
    assert mean is not None and mean.low == mean.high == 0.25
    varied = ([[2], [0], [1], [2], [0]], [[2], [2], [2], [2], [2]])
    first, _ = row_bootstrap(*varied, seed=3)
    again, _ = row_bootstrap(*varied, seed=3)
    assert first == again
    assert first[0] is not None and first[0].low < 0.5 < first[0].high


def test_row_bootstrap_is_wider_than_wilson_when_paths_of_a_row_agree() -> None:
    """20 paths per row that all agree are one observation, not 20: the row bootstrap must say so."""
    rows_yes = [[20]] * 5 + [[0]] * 5
    (boot,), _ = row_bootstrap(rows_yes, [[20]] * 10)
    naive = wilson(100, 200)
    assert boot is not None and naive is not None
    assert boot.high - boot.low > 1.5 * (naive.high - naive.low)
