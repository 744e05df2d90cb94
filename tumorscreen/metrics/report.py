"""The evaluation report of one model on one labelled set: headline figures with bootstrap
CIs, per-class figures, the tumour-vs-healthy view through ``tumor_score`` and calibration."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tumorscreen.metrics.bootstrap import bootstrap_ci
from tumorscreen.metrics.calibration import calibration_summary, probabilities
from tumorscreen.metrics.classification import (
    binary_auroc,
    confusion,
    confusion_summary,
    macro_auroc,
    per_class_report,
    sensitivity_specificity,
)
from tumorscreen.models.score import NO_TUMOR, tumor_logit


def tumor_auroc(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Tumour-vs-healthy AUROC of the one tumour score, (N, K) logits and (N,) int labels;
    NaN when either side is missing. Ranked on the log-odds, which never saturate."""
    return binary_auroc(labels != NO_TUMOR, tumor_logit(logits, temperature))


def headline_statistics(labels: np.ndarray, probs: np.ndarray,
                        score: np.ndarray) -> Callable[[np.ndarray], dict[str, float]]:
    """The headline figures of the rows picked by an index array (for the bootstrap);
    ``score`` (N,) ranks images for the tumour-vs-healthy AUROC."""
    predicted = probs.argmax(axis=1)
    tumour, called = labels != NO_TUMOR, predicted != NO_TUMOR

    def statistics(rows: np.ndarray) -> dict[str, float]:
        matrix = confusion(labels[rows], predicted[rows], probs.shape[1])
        sensitivity, specificity = sensitivity_specificity(tumour[rows], called[rows])
        return {**confusion_summary(matrix), "macro_auroc": macro_auroc(labels[rows], probs[rows]),
                "tumor_auroc": binary_auroc(tumour[rows], score[rows]),
                "tumor_sensitivity": sensitivity, "tumor_specificity": specificity}

    return statistics


def evaluation_report(logits: np.ndarray, labels: np.ndarray, temperature: float,
                      classes: Sequence[str], n_resamples: int = 1000, confidence: float = 0.95,
                      seed: int = 0, n_bins: int = 15,
                      groups: np.ndarray | None = None) -> dict[str, Any]:
    """Everything reported for (N, K) logits and (N,) int labels at temperature T.

    ``groups`` (N,) near-duplicate group ids make the bootstrap resample whole groups.

    Tumour sensitivity and specificity are those of the model's own call (argmax class is
    not ``notumor``); operating points from a threshold policy come later in the pipeline.
    """
    probs = probabilities(logits, temperature)
    score = tumor_logit(logits, temperature)  # ranks as tumor_score does, never saturating
    headline = bootstrap_ci(headline_statistics(labels, probs, score), labels, n_resamples,
                            confidence, seed, groups)
    predicted = probs.argmax(axis=1)
    return {
        "images": len(labels),
        "class_counts": {name: int((labels == k).sum()) for k, name in enumerate(classes)},
        "headline": headline,
        "confidence_level": confidence,
        "bootstrap_resamples": n_resamples,
        "bootstrap_unit": "image" if groups is None else "near-duplicate group",
        "independent_units": len(labels) if groups is None else len(np.unique(groups)),
        "per_class": per_class_report(labels, predicted, classes),
        "confusion": confusion(labels, predicted, len(classes)).tolist(),
        "calibration": calibration_summary(logits, labels, temperature, n_bins),
        "calibration_at_t1": calibration_summary(logits, labels, 1.0, n_bins),
        "temperature": temperature,
    }
