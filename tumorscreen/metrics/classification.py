"""Classification metrics on integer labels and probability arrays (sklearn underneath)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of (N,) predicted labels equal to the (N,) true labels."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over all ``num_classes`` classes (0 for a class never
    seen nor called)."""
    return confusion_summary(confusion(y_true, y_pred, num_classes))["macro_f1"]


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """AUROC of (N,) scores for (N,) 0/1 truth (Mann-Whitney, ties averaged); NaN when one
    class is missing. Rank-based because sklearn's per-call checks dominate bootstraps."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _beyond(others: np.ndarray, values: np.ndarray, above: bool) -> np.ndarray:
    """For each of ``values``, how many of the sorted ``others`` lie above it (or below),
    ties counted half."""
    left = np.searchsorted(others, values, side="left")
    right = np.searchsorted(others, values, side="right")
    strictly = len(others) - right if above else left
    return strictly + (right - left) / 2


def misordered_pairs(positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per image, the positive-negative pairs it orders the wrong way, ties counted half.

    (N,) 0/1 truth and (N,) scores -> (N,) counts: for a positive, the negatives scored
    above it; for a negative, the positives scored below it. Each side's counts sum to
    ``(1 - AUROC) * n_pos * n_neg``, so they say which images the lost AUROC sits on.
    """
    positive = np.asarray(positive, bool)
    score = np.asarray(score, dtype=np.float64)
    counts = np.zeros(len(score))
    counts[positive] = _beyond(np.sort(score[~positive]), score[positive], above=True)
    counts[~positive] = _beyond(np.sort(score[positive]), score[~positive], above=False)
    return counts


def macro_auroc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC of (N, K) probabilities; NaN unless every class is present."""
    per_class = [binary_auroc(y_true == k, probs[:, k]) for k in range(probs.shape[1])]
    return float(np.mean(per_class))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows true class, columns predicted class."""
    flat = np.asarray(y_true) * num_classes + np.asarray(y_pred)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_summary(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall) and macro-F1 from a (K, K) confusion matrix.

    Classes absent from the truth are left out of the balanced accuracy, as in sklearn.
    """
    matrix = np.asarray(matrix, np.float64)
    hits, truth, called = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = hits / truth
        f1 = np.where(truth + called > 0, 2 * hits / (truth + called), 0.0)
    return {"accuracy": float(hits.sum() / max(matrix.sum(), 1)),
            "balanced_accuracy": float(np.nanmean(recall)) if (truth > 0).any() else 0.0,
            "macro_f1": float(f1.mean())}


def sensitivity_specificity(positive: np.ndarray, called: np.ndarray) -> tuple[float, float]:
    """(TP / P, TN / N) for (N,) 0/1 truth and (N,) 0/1 calls."""
    positive, called = np.asarray(positive, bool), np.asarray(called, bool)
    sensitivity = called[positive].mean() if positive.any() else float("nan")
    specificity = (~called[~positive]).mean() if (~positive).any() else float("nan")
    return float(sensitivity), float(specificity)


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray,
                     classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support for each class name."""
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(classes)), zero_division=0)
    return {name: {"precision": float(precision[k]), "recall": float(recall[k]),
                   "f1": float(f1[k]), "support": int(support[k])}
            for k, name in enumerate(classes)}


