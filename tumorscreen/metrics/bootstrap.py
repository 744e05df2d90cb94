"""Percentile bootstrap confidence intervals, resampling within each true class."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def stratified_indices(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap resample of row indices, keeping each class's count (so every class
    stays present and one-vs-rest AUROCs stay defined)."""
    parts = [rng.choice(np.flatnonzero(labels == value), size=int((labels == value).sum()))
             for value in np.unique(labels)]
    return np.concatenate(parts)


def bootstrap_ci(statistics: Callable[[np.ndarray], dict[str, float]], labels: np.ndarray,
                 n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> dict[str, dict[str, float]]:
    """Each named statistic on all rows, with its percentile CI over stratified resamples.

    ``labels`` (N,) are the strata; ``statistics`` maps an index array to named numbers.
    Returns {name: {"value", "low", "high"}}; resamples where a statistic is undefined (NaN)
    are left out of its interval.
    """
    rng = np.random.default_rng(seed)
    point = statistics(np.arange(len(labels)))
    draws = [statistics(stratified_indices(labels, rng)) for _ in range(n_resamples)]
    alpha = (1.0 - confidence) / 2
    result = {}
    for name, value in point.items():
        values = np.array([draw[name] for draw in draws], dtype=np.float64)
        values = values[np.isfinite(values)]
        low, high = np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan,) * 2
        result[name] = {"value": float(value), "low": float(low), "high": float(high)}
    return result
