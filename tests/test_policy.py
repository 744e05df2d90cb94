"""Threshold policies, the Neyman-Pearson umbrella, the review band and its accounting."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.proportions import wilson_interval
from tumorscreen.policy.thresholds import (
    POLICIES,
    fit_policy,
    max_sensitivity_at_specificity,
    max_specificity_at_sensitivity,
    min_expected_cost,
    min_fn_at_fp,
    neyman_pearson,
    neyman_pearson_rank,
    threshold_curve,
)
from tumorscreen.policy.triage import DEFERRED, HEALTHY, TUMOR, band_report, review_band, triage

# 10 healthy cases scored 0.00..0.09 and 10 tumours scored 0.05..0.14: overlap 0.05..0.09
HEALTHY_SCORES = np.arange(10) / 100
TUMOR_SCORES = np.arange(5, 15) / 100
SCORES = np.concatenate([HEALTHY_SCORES, TUMOR_SCORES])
POSITIVES = np.r_[np.zeros(10, bool), np.ones(10, bool)]


def rates(threshold: float) -> tuple[int, int]:
    called = threshold <= SCORES
    return int((called & POSITIVES).sum()), int((called & ~POSITIVES).sum())


def test_curve_counts_every_distinct_threshold() -> None:
    curve = threshold_curve(SCORES, POSITIVES)
    assert curve.true_positives[0] == curve.false_positives[0] == 0  # calls nothing
    assert curve.true_positives[-1] == 10 and curve.false_positives[-1] == 10
    for t, tp, fp in zip(curve.thresholds, curve.true_positives, curve.false_positives,
                         strict=True):
        assert (tp, fp) == rates(t)


def test_max_sensitivity_at_specificity_known_answer() -> None:
    # specificity >= 0.8 allows two false positives (0.08, 0.09): the cut is 0.08 and every
    # tumour at or above it (0.08..0.14, 7 of 10) is called
    cut = max_sensitivity_at_specificity(SCORES, POSITIVES, 0.8)
    assert cut == pytest.approx(0.08)
    assert rates(cut) == (7, 2)
    assert rates(max_sensitivity_at_specificity(SCORES, POSITIVES, 1.0)) == (5, 0)


def test_min_fn_at_fp_known_answer() -> None:
    for k, expected in ((0, (5, 0)), (1, (6, 1)), (3, (8, 3)), (10, (10, 5))):
        assert rates(min_fn_at_fp(SCORES, POSITIVES, k)) == expected
    # with K = 10 every tumour is found at 5 FPs: the tie-break takes the fewest FPs
    assert min_fn_at_fp(SCORES, POSITIVES, 10) == pytest.approx(0.05)


def test_min_expected_cost_known_answer() -> None:
    # cost = c_fn * FN + c_fp * FP; moving the cut from 0.10 down to 0.05 trades one FN for
    # one FP per step, so the cheaper error decides
    assert rates(min_expected_cost(SCORES, POSITIVES, cost_fn=10, cost_fp=1)) == (10, 5)
    assert rates(min_expected_cost(SCORES, POSITIVES, cost_fn=1, cost_fp=10)) == (5, 0)
    with pytest.raises(TumorScreenError):
        min_expected_cost(SCORES, POSITIVES, cost_fn=-1, cost_fp=1)


def test_rule_out_cut_keeps_sensitivity() -> None:
    cut = max_specificity_at_sensitivity(SCORES, POSITIVES, 0.9)
    assert cut == pytest.approx(0.06) and rates(cut) == (9, 4)


def test_neyman_pearson_rank_matches_the_binomial_tail() -> None:
    # n = 59 healthy cases is the classic minimum for alpha = delta = 0.05: only k = n works
    assert neyman_pearson_rank(59, 0.05, 0.05) == 59
    with pytest.raises(TumorScreenError, match=r"at least 59 healthy cases.*it has 58"):
        neyman_pearson_rank(58, 0.05, 0.05)
    assert neyman_pearson_rank(1000, 0.1, 0.05) < 1000


def test_neyman_pearson_refuses_too_few_negatives() -> None:
    with pytest.raises(TumorScreenError, match="needs at least 29 healthy cases"):
        neyman_pearson(SCORES, POSITIVES, alpha=0.1, delta=0.05)


def test_neyman_pearson_controls_the_violation_rate() -> None:
    """Over many draws of n healthy scores, P(true FPR > alpha) <= delta for the umbrella
    threshold, while the naive empirical (1 - alpha) quantile violates about half the time."""
    alpha, delta, n, trials = 0.1, 0.1, 200, 2000
    rng = np.random.default_rng(0)
    umbrella = naive = 0
    positives = np.zeros(n, bool)
    for _ in range(trials):
        negatives = rng.normal(size=n)
        umbrella += norm.sf(neyman_pearson(negatives, positives, alpha, delta)) > alpha
        naive_cut = np.sort(negatives)[int(np.ceil((1 - alpha) * n)) - 1]  # empirical FPR = alpha
        naive += norm.sf(naive_cut) > alpha
    assert umbrella / trials <= delta + 0.02
    assert naive / trials > 0.3


def test_fit_policy_dispatches_with_only_its_own_inputs() -> None:
    settings = {"min_specificity": 0.8, "max_false_positives": 1, "cost_fn": 10.0,
                "cost_fp": 1.0, "alpha": 0.1, "delta": 0.1, "review": {}}
    assert set(POLICIES) == {"max_sensitivity_at_specificity", "min_fn_at_fp",
                             "min_expected_cost", "neyman_pearson"}
    assert fit_policy("min_fn_at_fp", settings, SCORES, POSITIVES) == \
        min_fn_at_fp(SCORES, POSITIVES, 1)
    with pytest.raises(TumorScreenError, match="unknown threshold policy"):
        fit_policy("youden", settings, SCORES, POSITIVES)


def test_review_band_contains_the_threshold_and_defers_the_overlap() -> None:
    cut = max_sensitivity_at_specificity(SCORES, POSITIVES, 0.8)
    low, high = review_band(SCORES, POSITIVES, cut, rule_out_sensitivity=1.0,
                            rule_in_specificity=1.0)
    assert low <= cut <= high
    assert (low, high) == pytest.approx((0.05, 0.10))  # exactly the overlap is deferred
    decisions = triage(SCORES, (low, high))
    assert (decisions[SCORES < 0.05] == HEALTHY).all()
    assert (decisions[SCORES >= 0.10] == TUMOR).all()
    assert (decisions[(SCORES >= 0.05) & (SCORES < 0.10)] == DEFERRED).all()


def test_band_accounting_never_counts_deferred_cases_as_positive() -> None:
    report = band_report(SCORES, POSITIVES, (0.05, 0.10))
    # 0.05..0.09 holds 5 healthy and 5 tumour scores: 10 of 20 deferred
    assert report["coverage"] == 0.5
    assert report["deferred"] == {"total": 10, "tumour": 5, "healthy": 5}
    counts = report["accepted"]["counts"]
    assert counts == {"tp": 5, "fp": 0, "tn": 5, "fn": 0}
    assert sum(counts.values()) + report["deferred"]["total"] == len(SCORES)
    assert report["accepted"]["sensitivity"]["value"] == 1.0


def test_empty_band_accepts_everything() -> None:
    report = band_report(SCORES, POSITIVES, (0.08, 0.08))
    assert report["coverage"] == 1.0 and report["deferred"]["total"] == 0
    assert report["accepted"]["counts"]["tp"] + report["accepted"]["counts"]["fn"] == 10


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 0) == (None, None)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0 < high < 0.2
