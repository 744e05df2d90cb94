"""audit: Grad-CAM, brain focus scores and error analysis of the base model on the internal
test and of the chosen site model on the external holdout (no TTA: CAMs explain the plain
input), with a folder per case worth reading."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages._paths import DATA, SITE_MODELS, THRESHOLDS
from stages._run import run_stage
from tumorscreen.explain import errors
from tumorscreen.explain.audit import (
    explain_images,
    focus_columns,
    focus_distributions,
    split_masks,
    write_cases,
)
from tumorscreen.explain.focus import audit_masks
from tumorscreen.explain.gradcam import default_target_layer
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.policy.matrix import Variant
from tumorscreen.records import provenance, read_json, sha256_file, write_json
from tumorscreen.train.data import labelled_split, site_split
from tumorscreen.train.device import resolve_device

OUT, METRICS = Path("plots/audit"), Path("metrics/audit.json")
RAW, QC = Path("data/raw"), Path("data/qc/manifest.csv")
SUMMARY = ("accuracy", "outcomes", "mean_confidence", "deferred", "wrong_among_accepted")


def audit(params: dict) -> None:
    cfg, mask_cfg, fitted = params["audit"], params["preprocess"]["mask"], read_json(THRESHOLDS)
    device = resolve_device(params["train"]["device"])
    row = fitted["rows"][Variant(cfg["model"], False, cfg["calibrated"]).key]
    qc = pd.read_csv(QC, keep_default_na=False).set_index("id")[["qc_decision", "qc_reason"]]
    mask_source = ("preprocess" if mask_cfg["enabled"]
                   else "brain_mask() on the model input (preprocess.mask is off)")
    subjects = {  # set: (images, model, temperature, threshold, band, policy)
        "test": (labelled_split(DATA, "test"), "base",
                 read_json(SITE_MODELS["base"][1])["temperature"], None, None, "argmax class"),
        "holdout": (site_split(DATA, "holdout"), cfg["model"], row["temperature"],
                    row["threshold"], tuple(row["band"]), fitted["policy"])}
    sets = {}
    for name, (subject, model_name, temperature, cut, band, policy) in subjects.items():
        model, config = load_checkpoint(SITE_MODELS[model_name][0])
        layer = cfg["target_layer"] or default_target_layer(model, subject.images.shape[-1])
        logits, cams = explain_images(model, config, subject.images, temperature, layer, device)
        masks = audit_masks(subject.images, split_masks(DATA, name, subject.manifest["id"]),
                            mask_cfg["enabled"], mask_cfg["rim_erosion"])
        scored = errors.scored_set(subject.labels, subject.manifest, logits, temperature, cut,
                                   band, site=name == "holdout")
        table = errors.error_table(scored, focus_columns(cams, masks))
        summary = errors.error_summary(table, cfg["top_k_errors"])
        (OUT / name).mkdir(parents=True, exist_ok=True)
        table.to_csv(OUT / name / "error_details.csv", index=False)
        write_json(OUT / name / "error_summary.json", summary)
        context = {"set": name, "model": model_name, "temperature": temperature,
                   "threshold": cut, "band": band, "policy": policy, "target_layer": layer,
                   "mask_source": mask_source}
        cases = errors.pick_cases(table, cfg["top_n"], cfg["true_positives"])
        write_cases(OUT / name / "cases", cases,
                    subject.images, subject.manifest, cams, masks, RAW, qc,
                    params["qc"]["limits"]["max_pixels"], context)
        sets[name] = {**context, "images": len(table), **{k: summary[k] for k in SUMMARY},
                      "focus": focus_distributions(table),
                      "checkpoint_sha256": sha256_file(SITE_MODELS[model_name][0] / "model.pt"),
                      "manifest_sha256": sha256_file(DATA / name / "manifest.csv")}
    write_json(METRICS, {"mask_source": mask_source, "sets": sets, "provenance": provenance(
        policy=fitted["policy"], tta=False, device=str(device),
        threshold={k: v["threshold"] for k, v in sets.items()},
        temperature={k: v["temperature"] for k, v in sets.items()},
        checkpoint_sha256={k: v["checkpoint_sha256"] for k, v in sets.items()})})


if __name__ == "__main__":
    run_stage("audit", audit)
