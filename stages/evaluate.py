"""evaluate: the calibrated model on the leak-free internal test split, with bootstrap CIs,
and on the dataset's own (leaky) Testing folder, labelled as such."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from stages._run import run_stage
from tumorscreen.data.split import EXCLUDED, INTERNAL_SPLITS
from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.report import evaluation_report
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.models.score import CLASSES, NO_TUMOR, tumor_score
from tumorscreen.models.tta import mode_logits
from tumorscreen.records import provenance, read_json, sha256_file, write_json
from tumorscreen.train.data import LabelledImages, concatenate, labelled_split
from tumorscreen.train.device import resolve_device

DATA = Path("data/preprocessed")
CHECKPOINT = Path("models/base")
CALIBRATION = Path("models/calibration.json")
PLOTS = Path("plots/evaluate")
METRICS = Path("metrics/evaluate.json")
LEAKY_NOTE = ("the dataset's own Testing folder: most of its images have near-duplicates in "
              "its Training folder, which this model trained on; shown only to expose the gap")


def write_plots(logits: np.ndarray, labels: np.ndarray, temperature: float) -> None:
    PLOTS.mkdir(parents=True, exist_ok=True)
    names = np.array(CLASSES)
    pd.DataFrame({"actual": names[labels], "predicted": names[logits.argmax(axis=1)]}).to_csv(
        PLOTS / "predictions.csv", index=False)
    tumour, score = labels != NO_TUMOR, tumor_score(logits, temperature)
    fpr, tpr, _ = roc_curve(tumour, score)
    pd.DataFrame({"fpr": fpr, "tpr": tpr}).to_csv(PLOTS / "roc.csv", index=False)
    precision, recall, _ = precision_recall_curve(tumour, score)
    pd.DataFrame({"recall": recall, "precision": precision}).to_csv(PLOTS / "pr.csv", index=False)


def evaluate(params: dict) -> None:
    cfg = params["evaluate"]
    calibration, tta = read_json(CALIBRATION), params["tta"]["internal"]
    if calibration.get("tta") != tta:
        raise TumorScreenError(f"models/calibration.json was fitted with tta "
                               f"{calibration.get('tta')!r}, tta.internal is {tta!r}")
    temperature = calibration["temperature"]
    device = resolve_device(params["train"]["device"])
    model, config = load_checkpoint(CHECKPOINT)

    def report(part: LabelledImages) -> tuple[dict, np.ndarray]:
        logits = mode_logits(model, config, part.images, device, tta,
                             params["tta"]["rotation_deg"])
        return evaluation_report(logits, part.labels, temperature, CLASSES, cfg["bootstrap"],
                                 cfg["confidence"], cfg["seed"],
                                 groups=part.resampling_units(cfg["bootstrap_unit"])), logits

    test = labelled_split(DATA, "test")
    test_report, test_logits = report(test)
    write_plots(test_logits, test.labels, temperature)
    internal = concatenate([labelled_split(DATA, split, required=split != EXCLUDED)
                            for split in (*INTERNAL_SPLITS, EXCLUDED)])
    leaky = internal.subset((internal.manifest["split_folder"] == "Testing").to_numpy())
    leaky_report, _ = report(leaky)
    write_json(METRICS, {
        "test": test_report,
        "leaky_testing_folder": {"note": LEAKY_NOTE, **leaky_report,
                                 "images_by_split": leaky.manifest["split"].value_counts()
                                 .sort_index().to_dict()},
        "provenance": provenance(
            test_images_sha256=sha256_file(DATA / "test" / "images.npy"),
            test_manifest_sha256=sha256_file(DATA / "test" / "manifest.csv"),
            checkpoint_sha256=sha256_file(CHECKPOINT / "model.pt"), temperature=temperature,
            threshold=None, policy="argmax class (threshold policies: threshold stage)",
            tta=tta, device=str(device), precision=config["precision"])})


if __name__ == "__main__":
    run_stage("evaluate", evaluate)
