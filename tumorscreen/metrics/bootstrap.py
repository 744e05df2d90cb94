"""Percentile bootstrap confidence intervals, resampling within each true class.

Near-duplicate images are not independent evidence: given their group ids, whole groups are
drawn (a stratified cluster bootstrap), so a pair of duplicates counts once in the width of
an interval, not twice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def stratified_indices(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap resample of row indices, keeping each class's count (so every class
    stays present and one-vs-rest AUROCs stay defined)."""
    parts = [rng.choice(np.flatnonzero(labels == value), size=int((labels == value).sum()))
             for value in np.unique(labels)]
    return np.concatenate(parts)


def group_members(labels: np.ndarray, groups: np.ndarray) -> list[list[np.ndarray]]:
    """Per class (in ``np.unique(labels)`` order), the row indices of each of its groups.

    labels (N,), groups (N,) hashable ids. A group holding several classes is split by
    class, so each stratum stays whole.
    """
    members = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        _, inverse = np.unique(groups[rows], return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        cuts = np.flatnonzero(np.diff(inverse[order])) + 1
        members.append(np.split(rows[order], cuts))
    return members


def grouped_indices(members: list[list[np.ndarray]], rng: np.random.Generator) -> np.ndarray:
    """One stratified cluster resample: each class draws as many groups as it has, with
    replacement, and takes all their rows (so the row count varies a little)."""
    return np.concatenate([part[i] for part in members
                           for i in rng.integers(0, len(part), size=len(part))])


def bootstrap_draws(statistics: Callable[[np.ndarray], dict[str, float]], labels: np.ndarray,
                    n_resamples: int = 1000, seed: int = 0, groups: np.ndarray | None = None
                    ) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Each named statistic on all rows, and on each of ``n_resamples`` stratified resamples.

    ``labels`` (N,) are the strata; ``statistics`` maps an index array to named numbers;
    ``groups`` (N,), when given, makes the resampling unit the group (near-duplicates move
    together) instead of the row. Returns (point, draws).
    """
    rng = np.random.default_rng(seed)
    point = statistics(np.arange(len(labels)))
    if groups is None:
        draws = [statistics(stratified_indices(labels, rng)) for _ in range(n_resamples)]
    else:
        members = group_members(labels, np.asarray(groups))
        draws = [statistics(grouped_indices(members, rng)) for _ in range(n_resamples)]
    return point, draws


def percentile_intervals(point: dict[str, float], draws: list[dict[str, float]],
                         confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """{name: {"value", "low", "high"}}: each point value with the percentile interval of its
    draws; draws where a statistic is undefined (NaN) are left out of its interval."""
    alpha = (1.0 - confidence) / 2
    result = {}
    for name, value in point.items():
        values = np.array([draw[name] for draw in draws], dtype=np.float64)
        values = values[np.isfinite(values)]
        low, high = np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan,) * 2
        result[name] = {"value": float(value), "low": float(low), "high": float(high)}
    return result


def bootstrap_ci(statistics: Callable[[np.ndarray], dict[str, float]], labels: np.ndarray,
                 n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                 groups: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Each named statistic on all rows, with its percentile CI over stratified resamples
    (``bootstrap_draws`` then ``percentile_intervals``)."""
    return percentile_intervals(*bootstrap_draws(statistics, labels, n_resamples, seed, groups),
                                confidence)
