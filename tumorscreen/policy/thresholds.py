"""Threshold policies on the tumour score, fitted on the tune split.

One decision rule everywhere: a case is called tumour when ``score >= threshold``. Every
policy picks its threshold among the candidates of ``threshold_curve``, so its operating
point on the fitting data is exact, and none has a built-in default cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from tumorscreen.errors import TumorScreenError


@dataclass(frozen=True)
class Curve:
    thresholds: np.ndarray  # (M,) descending; the first calls nothing tumour
    true_positives: np.ndarray  # (M,) positives with score >= threshold
    false_positives: np.ndarray  # (M,) negatives with score >= threshold
    positives: int
    negatives: int


def threshold_curve(scores: np.ndarray, positives: np.ndarray) -> Curve:
    """TP and FP counts of ``score >= t`` for every distinct score t of (N,) scores, plus one
    threshold just above the highest score; ``positives`` is (N,) bool."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if len(scores) == 0:
        raise TumorScreenError("cannot fit a threshold on zero images")
    distinct = np.unique(scores)[::-1]
    thresholds = np.concatenate([[np.nextafter(distinct[0], np.inf)], distinct])
    pos, neg = np.sort(scores[positives]), np.sort(scores[~positives])

    def at_or_above(sorted_scores: np.ndarray) -> np.ndarray:
        return len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="left")

    return Curve(thresholds, at_or_above(pos), at_or_above(neg), len(pos), len(neg))


def _best(curve: Curve, feasible: np.ndarray, *keys: np.ndarray) -> float:
    """The feasible threshold that is smallest in ``keys`` order (lexicographic)."""
    if not feasible.any():
        raise TumorScreenError("no threshold satisfies the policy's constraint")
    rows = np.flatnonzero(feasible)
    order = np.lexsort(tuple(key[rows] for key in reversed(keys)))
    return float(curve.thresholds[rows[order[0]]])


def _need(count: int, what: str) -> None:
    if count == 0:
        raise TumorScreenError(f"the policy needs {what} in the fitting split; it has none")


def max_sensitivity_at_specificity(scores: np.ndarray, positives: np.ndarray,
                                   min_specificity: float) -> float:
    """The threshold with the highest sensitivity among those with specificity >= S_min
    (ties: fewer false positives)."""
    curve = threshold_curve(scores, positives)
    _need(curve.negatives, "healthy cases")
    specificity = 1.0 - curve.false_positives / curve.negatives
    return _best(curve, specificity >= min_specificity - 1e-12,
                 -curve.true_positives, curve.false_positives)


def max_specificity_at_sensitivity(scores: np.ndarray, positives: np.ndarray,
                                   min_sensitivity: float) -> float:
    """The threshold with the highest specificity among those with sensitivity >= min
    (ties: more true positives): a rule-out cut."""
    curve = threshold_curve(scores, positives)
    _need(curve.positives, "tumour cases")
    sensitivity = curve.true_positives / curve.positives
    return _best(curve, sensitivity >= min_sensitivity - 1e-12,
                 curve.false_positives, -curve.true_positives)


def min_fn_at_fp(scores: np.ndarray, positives: np.ndarray, max_false_positives: int) -> float:
    """The threshold with the fewest false negatives among those with at most K false
    positives (ties: fewer false positives)."""
    curve = threshold_curve(scores, positives)
    return _best(curve, curve.false_positives <= max_false_positives,
                 -curve.true_positives, curve.false_positives)


def min_expected_cost(scores: np.ndarray, positives: np.ndarray, cost_fn: float,
                      cost_fp: float) -> float:
    """The threshold minimising ``cost_fn * FN + cost_fp * FP`` (ties: fewer false
    negatives)."""
    if cost_fn < 0 or cost_fp < 0:
        raise TumorScreenError("costs must be non-negative")
    curve = threshold_curve(scores, positives)
    false_negatives = curve.positives - curve.true_positives
    cost = cost_fn * false_negatives + cost_fp * curve.false_positives
    return _best(curve, np.ones_like(cost, dtype=bool), cost, false_negatives)


def neyman_pearson_rank(negatives: int, alpha: float, delta: float) -> int:
    """The umbrella order statistic k (1-based; Tong, Feng & Li 2018): the smallest k with
    P(Binomial(n, 1 - alpha) >= k) <= delta, so that thresholding just above the k-th
    smallest negative score keeps the false-positive rate <= alpha with probability
    >= 1 - delta. Refuses when n is too small for any k."""
    if not (0 < alpha < 1 and 0 < delta < 1):
        raise TumorScreenError("neyman_pearson needs 0 < alpha < 1 and 0 < delta < 1")
    ranks = np.arange(1, negatives + 1)
    violation = binom.sf(ranks - 1, negatives, 1.0 - alpha)
    admissible = ranks[violation <= delta]
    if len(admissible) == 0:
        needed = int(np.ceil(np.log(delta) / np.log(1.0 - alpha)))
        raise TumorScreenError(
            f"neyman_pearson with alpha={alpha}, delta={delta} needs at least {needed} "
            f"healthy cases in the fitting split; it has {negatives}")
    return int(admissible[0])


def neyman_pearson(scores: np.ndarray, positives: np.ndarray, alpha: float,
                   delta: float) -> float:
    """The umbrella threshold: just above the k-th smallest negative score, k from
    ``neyman_pearson_rank``."""
    negative_scores = np.sort(np.asarray(scores, dtype=np.float64)[~np.asarray(positives, bool)])
    rank = neyman_pearson_rank(len(negative_scores), alpha, delta)
    return float(np.nextafter(negative_scores[rank - 1], np.inf))


# policy name -> (function, the params it takes, by name)
POLICIES: dict[str, tuple[Callable[..., float], tuple[str, ...]]] = {
    "max_sensitivity_at_specificity": (max_sensitivity_at_specificity, ("min_specificity",)),
    "min_fn_at_fp": (min_fn_at_fp, ("max_false_positives",)),
    "min_expected_cost": (min_expected_cost, ("cost_fn", "cost_fp")),
    "neyman_pearson": (neyman_pearson, ("alpha", "delta")),
}


def policy_inputs(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The params policy ``name`` takes, picked from ``settings`` (all policies' params)."""
    if name not in POLICIES:
        raise TumorScreenError(f"unknown threshold policy '{name}'; one of {sorted(POLICIES)}")
    return {key: settings[key] for key in POLICIES[name][1]}


def fit_policy(name: str, settings: dict[str, Any], scores: np.ndarray,
               positives: np.ndarray) -> float:
    """The threshold policy ``name`` chooses on (N,) scores and (N,) bool labels."""
    inputs = policy_inputs(name, settings)
    return POLICIES[name][0](scores, positives, **inputs)
