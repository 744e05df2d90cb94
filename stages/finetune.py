"""finetune: adapt the trained model to the external site on its adapt split, select the
epoch and refit T for the tumour score on its tune split. The holdout is not an input."""

from __future__ import annotations

from pathlib import Path

from stages._run import epoch_curves, run_stage
from tumorscreen.metrics.calibration import fit_tumor_temperature
from tumorscreen.models.checkpoint import WEIGHTS, load_checkpoint, save_checkpoint
from tumorscreen.models.predict import checkpoint_logits
from tumorscreen.records import provenance, sha256_file, write_json
from tumorscreen.train.data import labelled_split, site_split
from tumorscreen.train.device import resolve_device, seed_everything
from tumorscreen.train.finetune import FinetuneConfig, adapt_to_site

DATA = Path("data/preprocessed")
BASE = Path("models/base")
FINETUNED = Path("models/finetuned")
CURVES = Path("plots/finetune")
METRICS = Path("metrics/finetune.json")


def finetune(params: dict) -> None:
    cfg = FinetuneConfig.from_params(params["finetune"], params["train"]["augment"])
    device = resolve_device(params["train"]["device"])
    seed_everything(cfg.seed)
    model, config = load_checkpoint(BASE)
    adapt, tune = site_split(DATA, "adapt"), site_split(DATA, "tune")
    replay = labelled_split(DATA, "train") if cfg.retain == "replay" else None
    with epoch_curves(CURVES) as log:
        result = adapt_to_site(model, adapt, tune, replay, cfg, device, config["precision"],
                               config["channels_last"], log)
    tune_logits = checkpoint_logits(result.model, config, tune.images, device)
    temperature = fit_tumor_temperature(tune_logits, tune.labels.astype(bool))
    base_sha256 = sha256_file(BASE / WEIGHTS)
    save_checkpoint(FINETUNED, result.model, {**config, "finetuned_from": base_sha256})
    write_json(FINETUNED / "calibration.json", {
        "temperature": temperature, "fitted_on": "tune", "images": len(tune),
        "method": "binary NLL of the tumour score over log T, bounded Brent"})
    base, best = result.history[0], result.history[result.best_epoch]
    write_json(METRICS, {
        "best_epoch": result.best_epoch, "epochs_run": len(result.history) - 1,
        "kept_base": result.best_epoch == 0, "retain": cfg.retain,
        "adapt_images": len(adapt), "tune_images": len(tune), "temperature": temperature,
        "tune": {"base": {k[5:]: v for k, v in base.items() if k.startswith("tune_")},
                 "finetuned": {k[5:]: v for k, v in best.items() if k.startswith("tune_")}},
        "provenance": provenance(
            adapt_manifest_sha256=sha256_file(DATA / "adapt" / "manifest.csv"),
            tune_manifest_sha256=sha256_file(DATA / "tune" / "manifest.csv"),
            base_checkpoint_sha256=base_sha256,
            checkpoint_sha256=sha256_file(FINETUNED / WEIGHTS), temperature=temperature,
            device=str(device), precision=config["precision"])})


if __name__ == "__main__":
    run_stage("finetune", finetune)
