"""evaluate_external: every row of the external matrix on the frozen holdout, each at the
threshold and review band its policy chose on tune. The holdout's only other reader is
audit, downstream, which explains these answers and chooses nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_curve

from stages._paths import DATA, SITE_MODELS, THRESHOLDS
from stages._run import run_stage
from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.bootstrap import bootstrap_ci
from tumorscreen.metrics.classification import binary_auroc
from tumorscreen.policy.matrix import Variant, comparison_table, model_views, variant_scores
from tumorscreen.policy.triage import band_report, decision_report
from tumorscreen.records import provenance, read_json, sha256_file, write_json
from tumorscreen.train.data import site_split
from tumorscreen.train.device import resolve_device

PLOTS = Path("plots/external")
VIEWS = Path("models/views_holdout.npz")  # logits kept between runs (persist)
METRICS = Path("metrics/external.json")


def evaluate_external(params: dict) -> None:
    cfg, fitted = params["evaluate_external"], read_json(THRESHOLDS)
    device = resolve_device(params["train"]["device"])
    holdout = site_split(DATA, "holdout")
    positives = holdout.labels.astype(bool)
    views = model_views(SITE_MODELS, holdout.images, device, fitted["tta_rotation_deg"],
                        VIEWS)
    stale = [name for name, v in views.items()
             if v.checkpoint_sha256 != fitted["checkpoint_sha256"][name]]
    if stale:
        raise TumorScreenError(f"{THRESHOLDS} was fitted for other {stale} weights; "
                               "rerun the threshold stage")
    PLOTS.mkdir(parents=True, exist_ok=True)
    rows, units = [], holdout.resampling_units(cfg["bootstrap_unit"])
    for key, row in fitted["rows"].items():
        variant = Variant(row["model"], row["tta"], row["calibrated"])
        scores = variant_scores(views[variant.model].logits, variant, row["temperature"])
        auroc = bootstrap_ci(lambda r, s=scores: {"auroc": binary_auroc(positives[r], s[r])},
                             holdout.labels, cfg["bootstrap"], cfg["confidence"], cfg["seed"],
                             units)
        rows.append({"key": key, **{k: row[k] for k in ("model", "tta", "calibrated",
                                                          "temperature", "threshold", "band")},
                     "auroc": auroc["auroc"],
                     **decision_report(positives, scores >= row["threshold"], cfg["confidence"]),
                     "review": band_report(scores, positives, row["band"], cfg["confidence"])})
        if not variant.tta and variant.calibrated:
            fpr, tpr, _ = roc_curve(positives, scores)
            pd.DataFrame({"fpr": fpr, "tpr": tpr}).to_csv(PLOTS / f"roc_{variant.model}.csv",
                                                          index=False)
    table = comparison_table(rows)
    table.to_csv(PLOTS / "comparison.csv", index=False)
    (PLOTS / "comparison.html").write_text(table.to_html(index=False, na_rep="-"))
    write_json(METRICS, {
        "policy": fitted["policy"], "inputs": fitted["inputs"], "holdout_images": len(holdout),
        "holdout_tumour": int(positives.sum()), "rows": rows,
        "provenance": provenance(
            holdout_manifest_sha256=sha256_file(DATA / "holdout" / "manifest.csv"),
            holdout_images_sha256=sha256_file(DATA / "holdout" / "images.npy"),
            checkpoint_sha256=fitted["checkpoint_sha256"], policy=fitted["policy"],
            threshold={row["key"]: row["threshold"] for row in rows},
            temperature={row["key"]: row["temperature"] for row in rows},
            tta={row["key"]: row["tta"] for row in rows}, device=str(device))})


if __name__ == "__main__":
    run_stage("evaluate_external", evaluate_external)
