"""calibrate: temperature scaling fitted on the val split's logits (T is an output), under
the same test-time views the evaluate stage uses."""

from __future__ import annotations

from pathlib import Path

from stages._run import run_stage
from tumorscreen.metrics.calibration import (
    calibration_summary,
    fit_temperature,
    probabilities,
    reliability_table,
)
from tumorscreen.metrics.report import tumor_auroc
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.models.tta import mode_logits
from tumorscreen.records import provenance, sha256_file, write_json
from tumorscreen.train.data import labelled_split
from tumorscreen.train.device import resolve_device

DATA = Path("data/preprocessed")
CHECKPOINT = Path("models/base")
CALIBRATION = Path("models/calibration.json")
PLOTS = Path("plots/calibrate")
METRICS = Path("metrics/calibration.json")


def calibrate(params: dict) -> None:
    bins = params["calibrate"]["bins"]
    device = resolve_device(params["train"]["device"])
    model, config = load_checkpoint(CHECKPOINT)
    val = labelled_split(DATA, "val")
    tta = params["tta"]["internal"]
    logits = mode_logits(model, config, val.images, device, tta, params["tta"]["rotation_deg"])
    temperature = fit_temperature(logits, val.labels)
    write_json(CALIBRATION, {"temperature": temperature, "fitted_on": "val", "tta": tta,
                             "images": len(val), "method": "NLL over log T, bounded Brent"})
    PLOTS.mkdir(parents=True, exist_ok=True)
    for name, t in (("before", 1.0), ("after", temperature)):
        table = reliability_table(probabilities(logits, t), val.labels, bins)
        table.assign(calibration=name).to_csv(PLOTS / f"reliability_{name}.csv", index=False)
    write_json(METRICS, {
        "temperature": temperature, "images": len(val), "bins": bins,
        "before": calibration_summary(logits, val.labels, 1.0, bins),
        "after": calibration_summary(logits, val.labels, temperature, bins),
        "tumor_auroc": tumor_auroc(logits, val.labels, temperature),
        "provenance": provenance(
            val_images_sha256=sha256_file(DATA / "val" / "images.npy"),
            checkpoint_sha256=sha256_file(CHECKPOINT / "model.pt"),
            temperature=temperature, tta=tta, device=str(device),
            precision=config["precision"])})


if __name__ == "__main__":
    run_stage("calibrate", calibrate)
