"""Metrics against independent computations, temperature recovery and bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn import metrics as skm

from benchmarks.compare_val import WORST_IMAGES, predictor_summary
from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.bootstrap import (
    bootstrap_ci,
    group_members,
    grouped_indices,
    stratified_indices,
)
from tumorscreen.metrics.calibration import (
    brier_score,
    calibrated_nll,
    calibrated_nll_differences,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    image_nll,
    maximum_calibration_error,
    nll,
    reliability_table,
)
from tumorscreen.metrics.classification import (
    binary_auroc,
    confusion,
    confusion_summary,
    macro_auroc,
    misordered_pairs,
    sensitivity_specificity,
)
from tumorscreen.metrics.report import evaluation_report
from tumorscreen.models.score import CLASSES
from tumorscreen.train.data import LabelledImages


def sample(count: int = 3000, classes: int = 4, seed: int = 0,
           sharpness: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from the logits' own softmax (a calibrated model)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, sharpness, (count, classes))
    probs = softmax(logits, axis=1)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


def loop_ece(probs: np.ndarray, labels: np.ndarray, bins: int) -> tuple[float, float]:
    """ECE and MCE written out bin by bin, as in Guo et al. (2017)."""
    confidence, predicted = probs.max(1), probs.argmax(1)
    ece, mce = 0.0, 0.0
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            gap = abs((predicted[inside] == labels[inside]).mean() - confidence[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    return ece, mce


def test_ece_and_mce_match_a_bin_by_bin_computation():
    logits, labels = sample()
    for temperature in (0.5, 1.0, 3.0):
        probs = softmax(logits / temperature, axis=1)
        ece, mce = loop_ece(probs, labels, 15)
        assert expected_calibration_error(probs, labels, 15) == pytest.approx(ece, abs=1e-12)
        assert maximum_calibration_error(probs, labels, 15) == pytest.approx(mce, abs=1e-12)


def test_ece_of_a_perfectly_calibrated_model_is_small_and_grows_when_sharpened():
    logits, labels = sample(20000)
    calibrated = expected_calibration_error(softmax(logits, axis=1), labels)
    assert calibrated < 0.015
    assert expected_calibration_error(softmax(3 * logits, axis=1), labels) > 5 * calibrated


def test_reliability_counts_cover_every_image():
    logits, labels = sample(500)
    table = reliability_table(softmax(logits, axis=1), labels, 15)
    assert table["count"].sum() == 500 and table["bin"].between(0, 14).all()


def test_brier_matches_sklearn_per_class_and_its_definition():
    logits, labels = sample(400)
    probs = softmax(logits, axis=1)
    per_class = sum(skm.brier_score_loss(labels == k, probs[:, k]) for k in range(4))
    assert brier_score(probs, labels) == pytest.approx(per_class, rel=1e-12)
    assert brier_score(np.eye(4)[labels], labels) == 0.0


def test_nll_matches_sklearn_log_loss():
    logits, labels = sample(400)
    expected = skm.log_loss(labels, softmax(logits / 2, axis=1), labels=range(4))
    assert nll(logits, labels, 2.0) == pytest.approx(expected, rel=1e-9)


def test_image_nll_is_each_images_log_loss_and_averages_to_the_nll():
    logits, labels = sample(50)
    losses = image_nll(logits, labels, 1.5)
    probs = softmax(logits / 1.5, axis=1)
    expected = [skm.log_loss([label], [row], labels=range(4))
                for row, label in zip(probs, labels, strict=True)]
    np.testing.assert_allclose(losses, expected, rtol=1e-9)
    assert losses.mean() == pytest.approx(nll(logits, labels, 1.5), rel=1e-12)


def test_worst_image_share_weighs_the_largest_losses_against_the_total():
    logits, labels = sample(200, seed=5)
    paths = np.array([f"image-{index}.jpg" for index in range(len(labels))])
    summary = predictor_summary(logits, labels, paths)
    losses = image_nll(logits, labels, summary["temperature"])
    expected = np.sort(losses)[-WORST_IMAGES:].sum() / losses.sum()
    assert summary["worst_images_nll_share"] == pytest.approx(expected, abs=1e-4)
    assert summary["nll_after_t"] == pytest.approx(losses.mean(), abs=1e-4)
    worst = summary["worst_images"]
    assert len(worst) == WORST_IMAGES
    assert [row["nll"] for row in worst] == sorted((row["nll"] for row in worst), reverse=True)
    for row in worst:
        index = int(row["path"].removeprefix("image-").removesuffix(".jpg"))
        assert row["nll"] == pytest.approx(losses[index], abs=1e-3)
        assert row["label"] == CLASSES[labels[index]]
        assert row["call"] == CLASSES[logits[index].argmax()]


@pytest.mark.parametrize("true_temperature", [0.5, 1.5, 2.5])
def test_temperature_is_recovered_within_five_percent(true_temperature):
    logits, labels = sample(20000, seed=3)
    distorted = logits * true_temperature  # over- (T > 1) or under-confident (T < 1)
    fitted = fit_temperature(distorted, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    before = calibration_summary(distorted, labels, 1.0)
    after = calibration_summary(distorted, labels, fitted)
    assert after["nll"] <= before["nll"] and after["ece"] < before["ece"]


def test_fitted_temperature_is_the_nll_minimum():
    logits, labels = sample(2000, seed=4)
    fitted = fit_temperature(logits * 2, labels)
    best = nll(logits * 2, labels, fitted)
    assert best <= nll(logits * 2, labels, fitted * 1.02)
    assert best <= nll(logits * 2, labels, fitted / 1.02)


def test_nll_difference_is_paired_and_refits_each_temperature():
    """A predictor that differs only by its temperature ties with the baseline; one that
    adds noise to the baseline's logits loses, and the interval says so."""
    logits, labels = sample(1500, seed=5)
    groups = np.arange(1500) // 3
    same = calibrated_nll_differences(logits, logits, labels, 200, groups=groups)["mean"]
    assert same == {"value": 0.0, "low": 0.0, "high": 0.0}
    rescaled = calibrated_nll_differences(logits, logits * 2.5, labels, 200, groups=groups)["mean"]
    assert abs(rescaled["value"]) < 1e-4 and rescaled["high"] - rescaled["low"] < 1e-3
    noisy = logits + np.random.default_rng(6).normal(0, 1.5, logits.shape)
    worse = calibrated_nll_differences(logits, noisy, labels, 200, groups=groups)["mean"]
    assert worse["value"] == pytest.approx(
        calibrated_nll(noisy, labels) - calibrated_nll(logits, labels), rel=1e-9)
    assert 0 < worse["low"] < worse["value"] < worse["high"]
    better = calibrated_nll_differences(noisy, logits, labels, 200, groups=groups)["mean"]
    assert better["value"] == pytest.approx(-worse["value"]) and better["high"] < 0


def test_nll_difference_over_seed_pairs_is_the_mean_of_the_pairs():
    """(S, N, K) logits pair seed by seed: one pair gives the single comparison exactly, two
    give the mean of their differences, and sides that do not pair are refused."""
    logits, labels = sample(900, seed=7)
    groups = np.arange(900) // 3
    noise = np.random.default_rng(8).normal(0, 1.5, (2, *logits.shape))
    worse = logits + noise[0]
    much_worse = logits + 2 * noise[1]
    single = calibrated_nll_differences(logits, worse, labels, 100, groups=groups)["mean"]
    assert calibrated_nll_differences(logits[None], worse[None], labels, 100,
                                      groups=groups)["mean"] == single
    pooled = calibrated_nll_differences(np.stack([logits, logits]),
                                        np.stack([worse, much_worse]), labels, 100,
                                        groups=groups)["mean"]
    second = calibrated_nll_differences(logits, much_worse, labels, 100, groups=groups)["mean"]
    assert pooled["value"] == pytest.approx((single["value"] + second["value"]) / 2)
    assert single["value"] < pooled["value"] < second["value"]
    assert 0 < pooled["low"] < pooled["value"] < pooled["high"]
    with pytest.raises(ValueError, match="do not pair"):
        calibrated_nll_differences(np.stack([logits, logits]), worse[None], labels, 10)


def test_resampling_seeds_carries_the_spread_between_pairs():
    """Two equal pairs give the same interval with or without the seeds resampled; two
    pairs on opposite sides of zero cancel exactly in every image resample, so only the
    seed-resampled interval reaches out to the pairs' own differences."""
    logits, labels = sample(900, seed=9)
    groups = np.arange(900) // 3
    worse = logits + np.random.default_rng(10).normal(0, 1.5, logits.shape)
    equal = calibrated_nll_differences(np.stack([logits, logits]), np.stack([worse, worse]),
                                       labels, 100, groups=groups)
    assert equal["mean_resampling_seeds"] == equal["mean"] == equal["pairs"][0]
    single = calibrated_nll_differences(logits, worse, labels, 100, groups=groups)
    assert single["mean_resampling_seeds"] == single["mean"]
    opposite = calibrated_nll_differences(np.stack([logits, worse]), np.stack([worse, logits]),
                                          labels, 100, groups=groups)
    gap = opposite["pairs"][0]["value"]
    assert gap > 0 and opposite["pairs"][1]["value"] == pytest.approx(-gap)
    assert abs(opposite["mean"]["high"] - opposite["mean"]["low"]) < 1e-12
    spread = opposite["mean_resampling_seeds"]
    assert spread["value"] == pytest.approx(0.0, abs=1e-12)
    assert spread["low"] < -gap / 2 and spread["high"] > gap / 2


def test_auroc_matches_sklearn_including_ties():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 300).astype(bool)
    score = np.round(rng.random(300) + truth * 0.3, 1)  # many ties
    assert binary_auroc(truth, score) == pytest.approx(skm.roc_auc_score(truth, score))
    assert np.isnan(binary_auroc(np.ones(5, bool), np.arange(5.0)))
    logits, labels = sample(600)
    probs = softmax(logits, axis=1)
    expected = skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert macro_auroc(labels, probs) == pytest.approx(expected)


def test_misordered_pairs_count_each_images_wrong_pairs_and_sum_to_the_lost_auroc():
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    score = np.array([0.9, 0.5, 0.2, 0.1, 0.5, 0.6])
    # positive 0.5: above it 0.6, tied with 0.5; positive 0.2: below 0.5 and 0.6
    assert misordered_pairs(truth, score).tolist() == [0, 1.5, 2, 0, 1.5, 2]
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 400).astype(bool)
    score = np.round(rng.random(400) + truth * 0.4, 1)  # many ties
    counts = misordered_pairs(truth, score)
    lost = (1 - binary_auroc(truth, score)) * truth.sum() * (~truth).sum()
    assert counts[truth].sum() == pytest.approx(lost)
    assert counts[~truth].sum() == pytest.approx(lost)
    assert misordered_pairs(truth, truth.astype(float)).sum() == 0


def test_confusion_summary_matches_sklearn():
    rng = np.random.default_rng(1)
    truth, predicted = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    predicted[truth == 1] = 1
    matrix = confusion(truth, predicted, 4)
    np.testing.assert_array_equal(matrix, skm.confusion_matrix(truth, predicted))
    summary = confusion_summary(matrix)
    assert summary["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert summary["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(truth, predicted))
    assert summary["macro_f1"] == pytest.approx(skm.f1_score(truth, predicted, average="macro"))


def test_sensitivity_and_specificity_count_each_side():
    truth = np.array([1, 1, 1, 1, 0, 0])
    called = np.array([1, 1, 1, 0, 1, 0])
    assert sensitivity_specificity(truth, called) == (0.75, 0.5)


def test_stratified_bootstrap_keeps_class_counts_and_is_seeded():
    labels = np.repeat(np.arange(4), [5, 10, 20, 1])
    rng = np.random.default_rng(0)
    drawn = stratified_indices(labels, rng)
    assert np.bincount(labels[drawn]).tolist() == [5, 10, 20, 1]
    values = np.random.default_rng(2).random(len(labels))

    def statistics(rows: np.ndarray) -> dict[str, float]:
        return {"mean": float(values[rows].mean())}

    first = bootstrap_ci(statistics, labels, 200, seed=7)
    assert first == bootstrap_ci(statistics, labels, 200, seed=7)
    assert first["mean"]["low"] <= first["mean"]["value"] <= first["mean"]["high"]
    assert first["mean"]["low"] < first["mean"]["high"]


def test_group_bootstrap_draws_whole_groups_within_each_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    groups = np.array(["a", "a", "b", "c", "d", "d", "d", "e", "a"])  # "a" holds both classes
    members = group_members(labels, groups)
    assert [sorted(map(len, part)) for part in members] == [[1, 1, 2], [1, 1, 3]]
    rng = np.random.default_rng(3)
    for _ in range(50):
        drawn = grouped_indices(members, rng)
        counts = {g: int((groups[drawn] == g).sum()) for g in "bcde"}
        assert counts["d"] % 3 == 0  # a group comes whole or not at all
        assert set(labels[drawn]) <= {0, 1}
        by_class = [np.isin(drawn, np.concatenate(part)).sum() for part in members]
        assert sum(by_class) == len(drawn)


def test_resampling_units_come_from_the_manifest_groups():
    manifest = pd.DataFrame({"id": ["i0", "i1", "i2"], "group": ["g1", None, "g1"]})
    part = LabelledImages(np.zeros((3, 4, 4), np.uint8), np.zeros(3, np.int64), manifest)
    assert part.resampling_units("group").tolist() == ["g1", "i1", "g1"]
    assert part.resampling_units("image") is None
    with pytest.raises(TumorScreenError, match="bootstrap unit must be one of"):
        part.resampling_units("patient")


def test_group_bootstrap_counts_duplicates_once():
    """Three copies of each of 300 values: resampling images treats them as 900 independent
    rows and narrows the interval by about sqrt(3); resampling groups matches the interval
    of the 300 distinct values."""
    values = np.random.default_rng(0).random(300)
    copies, labels = np.repeat(values, 3), np.zeros(900, dtype=int)
    groups = np.repeat(np.arange(300), 3)

    def width(data: np.ndarray, strata: np.ndarray, units: np.ndarray | None) -> float:
        ci = bootstrap_ci(lambda rows: {"mean": float(data[rows].mean())}, strata, 2000,
                          seed=1, groups=units)["mean"]
        return ci["high"] - ci["low"]

    distinct = width(values, np.zeros(300, dtype=int), None)
    assert width(copies, labels, groups) == pytest.approx(distinct, rel=0.12)
    assert width(copies, labels, None) / distinct == pytest.approx(3 ** -0.5, rel=0.12)


def test_evaluation_report_headline_and_intervals():
    logits, labels = sample(800, sharpness=4.0)
    report = evaluation_report(logits, labels, 1.0, CLASSES, n_resamples=100)
    predicted = logits.argmax(1)
    accuracy = report["headline"]["accuracy"]
    assert accuracy["value"] == pytest.approx((predicted == labels).mean())
    assert accuracy["low"] < accuracy["value"] < accuracy["high"]
    assert report["images"] == 800 and sum(report["class_counts"].values()) == 800
    assert np.array(report["confusion"]).sum() == 800
    assert set(report["headline"]) == {"accuracy", "balanced_accuracy", "macro_f1",
                                       "macro_auroc", "tumor_auroc", "tumor_sensitivity",
                                       "tumor_specificity"}
