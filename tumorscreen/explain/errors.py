"""Error analysis: one row per image, a summary, and the cases worth looking at.

Pure pandas/numpy. The decision is "tumour" when ``tumor_score >= threshold``, or, with no
threshold (the internal test), when the arg-max class is a tumour class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from tumorscreen.models.score import CLASSES, NO_TUMOR, tumor_score

OUTCOMES = ("tp", "fp", "tn", "fn")
SOURCE_COLUMNS = ("id", "dataset", "split", "label", "path")


@dataclass(frozen=True)
class ScoredSet:
    manifest: pd.DataFrame  # N rows, in array order
    logits: np.ndarray  # (N, K)
    temperature: float
    true_tumour: np.ndarray  # (N,) bool
    true_class: np.ndarray | None  # (N,) indices into CLASSES, or None (tumour/healthy only)
    threshold: float | None  # None: the arg-max class decides
    band: tuple[float, float] | None = None  # review band [low, high): deferred, not decided


def scored_set(labels: np.ndarray, manifest: pd.DataFrame, logits: np.ndarray,
               temperature: float, threshold: float | None = None,
               band: tuple[float, float] | None = None, site: bool = False) -> ScoredSet:
    """A ScoredSet from (N,) labels: class indices, or 1/0 tumour for a ``site`` set."""
    labels = np.asarray(labels)
    if site:
        return ScoredSet(manifest, logits, temperature, labels.astype(bool), None, threshold,
                         band)
    return ScoredSet(manifest, logits, temperature, labels != NO_TUMOR, labels, threshold, band)


def error_table(scored: ScoredSet, focus: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per image: source, prediction, decision, outcome, confidence, and the (N,)
    arrays in ``focus`` as extra columns.

    ``confidence`` is the probability the model gave its own answer: the top class's for the
    arg-max decision, else the tumour score or one minus it.
    """
    probabilities = softmax(scored.logits / scored.temperature, axis=1)
    predicted = probabilities.argmax(axis=1)
    score = tumor_score(scored.logits, scored.temperature)
    if scored.threshold is None:
        decision, confidence = predicted != NO_TUMOR, probabilities.max(axis=1)
    else:
        decision = score >= scored.threshold
        confidence = np.where(decision, score, 1.0 - score)
    truth = scored.true_tumour.astype(bool)
    outcome = np.select([truth & decision, ~truth & decision, ~truth & ~decision],
                        ["tp", "fp", "tn"], "fn")
    correct = (predicted == scored.true_class) if scored.true_class is not None \
        else decision == truth
    deferred = ((score >= scored.band[0]) & (score < scored.band[1])) if scored.band \
        else np.zeros(len(score), bool)
    table = scored.manifest.reindex(columns=list(SOURCE_COLUMNS)).assign(
        true_tumour=truth, predicted_class=np.array(CLASSES)[predicted],
        tumour_score=score, decision=np.where(decision, "tumour", "healthy"),
        confidence=confidence, outcome=outcome, correct=correct, deferred=deferred)
    return table.assign(**focus)


def distribution(values: np.ndarray) -> dict[str, Any]:
    """Count, undefined (NaN) count, mean, median and quartiles of the defined values."""
    values = np.asarray(values, np.float64)
    defined = values[np.isfinite(values)]
    if len(defined) == 0:
        return {"count": 0, "undefined": len(values)}
    q25, median, q75 = np.percentile(defined, [25, 50, 75])
    return {"count": len(defined), "undefined": int(len(values) - len(defined)),
            "mean": float(defined.mean()), "median": float(median), "q25": float(q25),
            "q75": float(q75)}


def group_distributions(table: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    """``distribution`` of one column for all, correct, wrong, and each outcome."""
    groups = {"all": np.ones(len(table), bool), "correct": table["correct"].to_numpy(bool),
              "wrong": ~table["correct"].to_numpy(bool)}
    groups |= {outcome: (table["outcome"] == outcome).to_numpy() for outcome in OUTCOMES}
    return {name: distribution(table.loc[rows, column].to_numpy()) for name, rows in
            groups.items()}


def _mean_or_none(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None  # JSON has no NaN


def error_summary(table: pd.DataFrame, top_k: int) -> dict[str, Any]:
    """Counts, confusion patterns of the wrong answers, mean confidence on errors vs correct
    answers, deferred cases, and the ``top_k`` most confident errors."""
    wrong = table[~table["correct"]]
    actual = np.where(table["dataset"] == "external", np.where(table["true_tumour"], "yes", "no"),
                      table["label"])
    answered = np.where(table["dataset"] == "external", table["decision"],
                        table["predicted_class"])
    patterns = (pd.DataFrame({"actual": actual, "predicted": answered})[~table["correct"]]
                .value_counts().rename("count").reset_index())
    accepted = table[~table["deferred"]]
    confident = wrong.sort_values("confidence", ascending=False, kind="stable").head(top_k)
    return {
        "images": len(table), "correct": int(table["correct"].sum()), "wrong": len(wrong),
        "accuracy": _mean_or_none(table["correct"]),
        "outcomes": {outcome: int((table["outcome"] == outcome).sum()) for outcome in OUTCOMES},
        "confusion_patterns": patterns.to_dict(orient="records"),
        "mean_confidence": {"correct": _mean_or_none(table.loc[table["correct"], "confidence"]),
                            "wrong": _mean_or_none(wrong["confidence"])},
        "deferred": int(table["deferred"].sum()),
        "wrong_among_accepted": int((~accepted["correct"]).sum()),
        "top_confident_errors": confident[
            ["id", "label", "predicted_class", "decision", "tumour_score", "confidence",
             "outcome"]].to_dict(orient="records")}


def pick_cases(table: pd.DataFrame, top_n: int, true_positives: int) -> pd.DataFrame:
    """The ``top_n`` most confident false negatives and false positives, then the
    ``true_positives`` most confident true positives for contrast; adds ``kind`` and ``rank``."""
    chosen = []
    for kind, count in (("fn", top_n), ("fp", top_n), ("tp", true_positives)):
        rows = table[table["outcome"] == kind].sort_values("confidence", ascending=False,
                                                           kind="stable").head(count)
        chosen.append(rows.assign(kind=kind, rank=np.arange(1, len(rows) + 1)))
    return pd.concat(chosen)
