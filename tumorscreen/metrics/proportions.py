"""Confidence intervals for proportions."""

from __future__ import annotations

from scipy.stats import binomtest


def wilson_interval(successes: int, trials: int,
                    confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of ``successes / trials``; (None, None) when trials is 0."""
    if trials == 0:
        return None, None
    interval = binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)
