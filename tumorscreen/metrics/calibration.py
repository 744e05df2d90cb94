"""Calibration: temperature scaling, NLL, top-label ECE/MCE, multiclass Brier, reliability."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.bootstrap import bootstrap_draws, percentile_intervals
from tumorscreen.models.score import tumor_logit

TEMPERATURE_BOUNDS = (0.05, 20.0)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of (N, K) logits / T -> (N, K)."""
    return softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def image_nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative log-likelihood of each of (N,) int labels under softmax((N, K) logits / T)
    -> (N,)."""
    log_p = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return -log_p[np.arange(len(labels)), labels]


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of (N,) int labels under softmax((N, K) logits / T)."""
    return float(image_nll(logits, labels, temperature).mean())


def _minimise_over_log_t(loss: Callable[[float], float], count: int) -> float:
    if count == 0:
        raise TumorScreenError("cannot fit a temperature on zero images")
    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: loss(float(np.exp(log_t))), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-6, "maxiter": 500})
    if not result.success:
        raise TumorScreenError(f"temperature fit did not converge: {result.message}")
    return float(np.exp(result.x))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising val NLL, searched over log T with bounded Brent (NLL is convex in 1/T,
    so the bounded 1-D search converges to the optimum)."""
    return _minimise_over_log_t(lambda t: nll(logits, labels, t), len(labels))


def calibrated_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """NLL of (N, K) logits after the temperature fitted on these same rows."""
    return nll(logits, labels, fit_temperature(logits, labels))


def calibrated_nll_differences(baseline: np.ndarray, candidate: np.ndarray, labels: np.ndarray,
                               n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                               groups: np.ndarray | None = None) -> dict[str, Any]:
    """Paired comparison of two predictors on one labelled split: the candidate's calibrated
    NLL minus the baseline's (negative favours the candidate), with its percentile CI.

    baseline, candidate (N, K) logits of the same N images, or (S, N, K) for S pairs (one
    per training seed); labels (N,) int; groups (N,) near-duplicate ids to resample whole
    groups. Every predictor is scored on the same resampled rows (paired), and each T is
    refitted on them, so the interval includes the uncertainty of fitting T. Returns
    {"mean": the pairs' mean difference, "mean_resampling_seeds": the same mean whose
    resamples also draw S of the pairs with replacement, "pairs": [each pair's difference]},
    each as {"value", "low", "high"}, all from the same image resamples. "mean" holds the
    seeds fixed, so it speaks for these S networks only; "mean_resampling_seeds" also
    carries the seed-to-seed spread of the difference (a two-stage bootstrap; with few
    seeds it still understates that spread, since it sees only S distinct pairs).
    """
    baselines = baseline if baseline.ndim == 3 else baseline[None]
    candidates = candidate if candidate.ndim == 3 else candidate[None]
    if baselines.shape != candidates.shape:
        raise ValueError(f"baseline logits {baselines.shape} and candidate logits "
                         f"{candidates.shape} do not pair")
    names = [f"pair {i}" for i in range(len(baselines))]

    def statistics(rows: np.ndarray) -> dict[str, float]:
        return {name: calibrated_nll(pair_candidate[rows], labels[rows])
                - calibrated_nll(pair_baseline[rows], labels[rows])
                for name, pair_baseline, pair_candidate
                in zip(names, baselines, candidates, strict=True)}

    point, draws = bootstrap_draws(statistics, labels, n_resamples, seed, groups)
    by_pair = np.array([[draw[name] for name in names] for draw in draws])  # (B, S)
    picks = np.random.default_rng([seed, len(names)]).integers(0, len(names), by_pair.shape)
    point["mean"] = point["mean_resampling_seeds"] = float(np.mean(list(point.values())))
    for draw, differences, picked in zip(draws, by_pair, picks, strict=True):
        draw["mean"] = float(differences.mean())
        draw["mean_resampling_seeds"] = float(differences[picked].mean())
    intervals = percentile_intervals(point, draws, confidence)
    return {"mean": intervals["mean"],
            "mean_resampling_seeds": intervals["mean_resampling_seeds"],
            "pairs": [intervals[name] for name in names]}


def tumor_nll(logits: np.ndarray, positives: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary NLL of (N,) bool tumour labels under ``tumor_score((N, K) logits, T)``."""
    logit = tumor_logit(logits, temperature)
    return float(np.mean(np.logaddexp(0.0, np.where(positives, -logit, logit))))


def fit_tumor_temperature(logits: np.ndarray, positives: np.ndarray) -> float:
    """The T minimising the binary NLL of the tumour score, for sites labelled only
    tumour/healthy (same bounded search over log T)."""
    return _minimise_over_log_t(lambda t: tumor_nll(logits, positives, t), len(positives))


def _bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    # bin k holds confidences in (k/n, (k+1)/n]; a confidence of exactly 0 goes to bin 0
    return np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)


def reliability_table(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Top-label reliability per non-empty equal-width bin: confidence, accuracy, count."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    table = pd.DataFrame({"bin": _bins(confidence, n_bins), "confidence": confidence,
                          "accuracy": correct})
    grouped = table.groupby("bin").agg(confidence=("confidence", "mean"),
                                       accuracy=("accuracy", "mean"),
                                       count=("accuracy", "size")).reset_index()
    grouped["bin_upper"] = (grouped["bin"] + 1) / n_bins
    return grouped


def _gaps(table: pd.DataFrame) -> pd.Series:
    return (table["accuracy"] - table["confidence"]).abs()


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over bins of (count / N) * |accuracy - mean confidence|."""
    table = reliability_table(probs, labels, n_bins)
    return float((_gaps(table) * table["count"]).sum() / len(labels))


def maximum_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label MCE: the largest |accuracy - mean confidence| over non-empty bins."""
    return float(_gaps(reliability_table(probs, labels, n_bins)).max())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier: mean over images of sum_k (p_k - onehot_k)^2, in [0, 2]."""
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def calibration_summary(logits: np.ndarray, labels: np.ndarray, temperature: float,
                        n_bins: int = 15) -> dict[str, float]:
    """NLL, ECE, MCE and Brier of (N, K) logits at temperature T."""
    probs = probabilities(logits, temperature)
    table = reliability_table(probs, labels, n_bins)  # one binning serves ECE and MCE
    return {"nll": nll(logits, labels, temperature),
            "ece": float((_gaps(table) * table["count"]).sum() / len(labels)),
            "mce": float(_gaps(table).max()),
            "brier": brier_score(probs, labels)}
