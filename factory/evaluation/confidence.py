"""Confidence intervals for the rates the evaluations report.

- `wilson`: the Wilson score interval for independent yes/no outcomes (one answer per instruction).
- `row_bootstrap`: C²-Eval's b paths of one row share the request and the harmful prefix, so they are
  correlated and a Wilson interval over N·b paths would be too narrow. We resample ROWS (each with all
  its paths) and recompute every Corr@k and Corr_mean as the share over the resampled paths; the
  interval is the percentile interval of the replicates. Seeded, so a report is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

from schemas.eval_report import Interval

BOOTSTRAP_RESAMPLES = 2000


def wilson(positives: int, n: int, confidence: float = 0.95) -> Interval | None:
    """Wilson score interval for `positives` out of `n`; None when n == 0."""
    if n == 0:
        return None
    if not 0 <= positives <= n:
        raise ValueError(f"positives={positives} must lie in [0, n={n}]")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = positives / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if positives == 0 else max(0.0, centre - half)  # exact ends: no 1e-17 rounding residue
    high = 1.0 if positives == n else min(1.0, centre + half)
    return Interval(low=low, high=high)


def row_bootstrap(
    yes: Sequence[Sequence[int]],
    judged: Sequence[Sequence[int]],
    *,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[list[Interval | None], Interval | None]:
    """Percentile intervals for each column's share (yes/judged summed over rows) and for their mean.

    `yes[r][j]` and `judged[r][j]` are row r's counts for column j (a value of k). Returns one interval
    per column (None when the column has no judged path) and one for the mean over columns (None when
    any column has none).
    """
    import numpy as np

    y = np.asarray(yes, dtype=np.float64)
    n = np.asarray(judged, dtype=np.float64)
    if y.ndim != 2 or y.shape != n.shape or y.shape[0] == 0:
        raise ValueError("yes and judged must be equal-shaped, non-empty row × column tables")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, y.shape[0], size=(resamples, y.shape[0]))
    y_sum, n_sum = y[picks].sum(axis=1), n[picks].sum(axis=1)  # (resamples, columns)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = y_sum / n_sum
    alpha = (1 - confidence) / 2
    columns: list[Interval | None] = []
    for j in range(y.shape[1]):
        if n[:, j].sum() == 0:
            columns.append(None)
            continue
        valid = shares[:, j][~np.isnan(shares[:, j])]
        columns.append(_percentile_interval(valid, alpha))
    if any(c is None for c in columns):
        return columns, None
    means = shares.mean(axis=1)
    return columns, _percentile_interval(means[~np.isnan(means)], alpha)


def _percentile_interval(values: Any, alpha: float) -> Interval:
    import numpy as np

    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(low=float(np.clip(low, 0.0, 1.0)), high=float(np.clip(high, 0.0, 1.0)))
