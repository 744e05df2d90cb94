"""Decisions at a threshold and with a review band, and their accounting.

The band [low, high) around the policy threshold defers cases to a human reader: below
``low`` a case is called healthy, at or above ``high`` it is called tumour, and in between
it is deferred. Deferred cases are never counted as positives (nor as negatives): the
band's figures are coverage and the sensitivity/specificity on the accepted cases.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tumorscreen.metrics.proportions import wilson_interval
from tumorscreen.policy.thresholds import (
    max_sensitivity_at_specificity,
    max_specificity_at_sensitivity,
)

HEALTHY, TUMOR, DEFERRED = 0, 1, -1


def review_band(scores: np.ndarray, positives: np.ndarray, threshold: float,
                rule_out_sensitivity: float, rule_in_specificity: float) -> tuple[float, float]:
    """[low, high) fitted on (N,) scores and bool labels: ``low`` is the rule-out cut keeping
    sensitivity >= the target, ``high`` the rule-in cut keeping specificity >= the target;
    the band always contains the policy threshold."""
    low = max_specificity_at_sensitivity(scores, positives, rule_out_sensitivity)
    high = max_sensitivity_at_specificity(scores, positives, rule_in_specificity)
    return min(low, threshold), max(high, threshold)


def triage(scores: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """(N,) scores -> (N,) int8 decisions: HEALTHY, TUMOR or DEFERRED."""
    low, high = band
    scores = np.asarray(scores, dtype=np.float64)
    decisions = np.full(len(scores), DEFERRED, dtype=np.int8)
    decisions[scores < low] = HEALTHY
    decisions[scores >= high] = TUMOR
    return decisions


def _rate(successes: int, trials: int, confidence: float) -> dict[str, float | None]:
    low, high = wilson_interval(successes, trials, confidence)
    return {"value": successes / trials if trials else None, "low": low, "high": high,
            "successes": successes, "trials": trials}


def decision_report(positives: np.ndarray, called: np.ndarray,
                    confidence: float = 0.95) -> dict[str, Any]:
    """Counts and rates (Wilson CIs) of (N,) bool calls against (N,) bool labels."""
    positives, called = np.asarray(positives, bool), np.asarray(called, bool)
    tp, fp = int((called & positives).sum()), int((called & ~positives).sum())
    fn, tn = int((~called & positives).sum()), int((~called & ~positives).sum())
    return {"counts": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
            "sensitivity": _rate(tp, tp + fn, confidence),
            "specificity": _rate(tn, tn + fp, confidence),
            "ppv": _rate(tp, tp + fp, confidence),
            "npv": _rate(tn, tn + fn, confidence)}


def band_report(scores: np.ndarray, positives: np.ndarray, band: tuple[float, float],
                confidence: float = 0.95) -> dict[str, Any]:
    """Coverage of the band's accepted cases and their decision report; deferred cases are
    counted separately by true label."""
    decisions = triage(scores, band)
    positives = np.asarray(positives, bool)
    accepted = decisions != DEFERRED
    return {"band": list(band), "coverage": float(accepted.mean()) if len(accepted) else None,
            "deferred": {"total": int((~accepted).sum()),
                         "tumour": int((~accepted & positives).sum()),
                         "healthy": int((~accepted & ~positives).sum())},
            "accepted": decision_report(positives[accepted], decisions[accepted] == TUMOR,
                                        confidence)}
