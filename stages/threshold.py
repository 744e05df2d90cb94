"""threshold: fit the chosen policy and the review band on the external tune split, for every
row of the external matrix (model x TTA x calibration). The holdout is not an input."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from stages._paths import DATA, SITE_MODELS, THRESHOLDS
from stages._run import run_stage
from tumorscreen.metrics.classification import binary_auroc
from tumorscreen.policy.matrix import matrix, model_views, row_temperature, variant_scores
from tumorscreen.policy.thresholds import fit_policy, policy_inputs
from tumorscreen.policy.triage import band_report, decision_report, review_band
from tumorscreen.records import provenance, sha256_file, write_json
from tumorscreen.train.data import site_split
from tumorscreen.train.device import resolve_device

VIEWS = Path("models/views_tune.npz")  # logits kept between runs (persist)
METRICS = Path("metrics/threshold.json")


def threshold(params: dict) -> None:
    cfg, review = params["threshold"], params["threshold"]["review"]
    device = resolve_device(params["train"]["device"])
    tune = site_split(DATA, "tune")
    positives = tune.labels.astype(bool)
    views = model_views(SITE_MODELS, tune.images, device, params["tta"]["rotation_deg"],
                        VIEWS)
    rows = {}
    for variant in matrix():
        scores = variant_scores(views[variant.model].logits, variant,
                                views[variant.model].temperature)
        cut = fit_policy(cfg["policy"], cfg, scores, positives)
        band = review_band(scores, positives, cut, review["rule_out_sensitivity"],
                           review["rule_in_specificity"])
        rows[variant.key] = {
            **asdict(variant), "threshold": cut, "band": list(band),
            "temperature": row_temperature(variant, views[variant.model].temperature),
            "tune": {"auroc": binary_auroc(positives, scores),
                     **decision_report(positives, scores >= cut, cfg["confidence"]),
                     "review": band_report(scores, positives, band, cfg["confidence"])}}
    fitted = {"policy": cfg["policy"], "inputs": policy_inputs(cfg["policy"], cfg),
              "review": review, "fitted_on": "tune", "tune_images": len(tune),
              "rule": "tumour when score >= threshold; deferred when low <= score < high",
              "tta_rotation_deg": params["tta"]["rotation_deg"],
              "checkpoint_sha256": {name: v.checkpoint_sha256 for name, v in views.items()},
              "rows": rows}
    write_json(THRESHOLDS, fitted)
    write_json(METRICS, {**{k: v for k, v in fitted.items() if k != "rows"},
                         "rows": {key: {"threshold": row["threshold"], "band": row["band"],
                                        "tune_sensitivity": row["tune"]["sensitivity"]["value"],
                                        "tune_specificity": row["tune"]["specificity"]["value"]}
                                  for key, row in rows.items()},
                         "provenance": provenance(
                             tune_manifest_sha256=sha256_file(DATA / "tune" / "manifest.csv"),
                             checkpoint_sha256=fitted["checkpoint_sha256"],
                             policy=cfg["policy"], device=str(device),
                             temperature={k: v.temperature for k, v in views.items()})})


if __name__ == "__main__":
    run_stage("threshold", threshold)
