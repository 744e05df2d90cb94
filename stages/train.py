"""train: two-phase transfer learning on the train split (and, when train.site_weight > 0,
the site's adapt split as tumour or healthy), early stopping on val."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stages._run import epoch_curves, run_stage
from tumorscreen.models.backbones import build_network
from tumorscreen.models.checkpoint import save_checkpoint
from tumorscreen.models.score import CLASSES
from tumorscreen.records import provenance, sha256_file, write_json
from tumorscreen.train.data import labelled_split, site_split
from tumorscreen.train.device import (
    describe_device,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from tumorscreen.train.loop import TrainConfig, fit

DATA = Path("data/preprocessed")
CHECKPOINT = Path("models/base")
CURVES = Path("plots/train")
METRICS = Path("metrics/train.json")


def train(params: dict) -> None:
    cfg = TrainConfig.from_params(params["train"])
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    model, init = build_network(**params["model"], num_classes=len(CLASSES))
    train_set, val_set = labelled_split(DATA, "train"), labelled_split(DATA, "val")
    site = site_split(DATA, "adapt") if cfg.site_weight else None
    start = time.perf_counter()
    with epoch_curves(CURVES) as log:
        result = fit(model, (train_set.images, train_set.labels),
                     (val_set.images, val_set.labels), cfg, device, precision, log,
                     groups=train_set.resampling_units("group"),
                     site=None if site is None else (site.images, site.labels))
    wall = time.perf_counter() - start
    size = train_set.images.shape[-1]
    raw = float(np.median(result.raw_images_per_s)) if result.raw_images_per_s else None
    loop = result.train_images / result.train_seconds if result.train_seconds else None
    save_checkpoint(CHECKPOINT, result.model, {
        **params["model"], "classes": list(CLASSES), "image_size": size,
        "precision": precision, "channels_last": cfg.channels_last,
        "batch_size": cfg.batch_size, "init": init})
    write_json(CHECKPOINT / "run_info.json", {
        **describe_device(device), "precision": precision, "init": init,
        "wall_seconds": round(wall, 2), "epochs_run": len(result.history),
        "train_images": len(train_set), "val_images": len(val_set),
        "site_images": 0 if site is None else len(site),
        "loop_images_per_s": loop, "raw_images_per_s": raw,
        "raw_images_per_s_by_epoch": result.raw_images_per_s,
        "loop_vs_raw": loop / raw if loop and raw else None,
        "provenance": provenance()})
    write_json(METRICS, {
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "stopped_early": result.stopped_early, "init": init,
        "upweighted_images": result.upweighted_images,
        "cluster_counts": result.cluster_counts,
        "averaged_epochs": result.averaged_epochs, "average_val": result.average_scores,
        "val": result.val_scores,
        "train_loss": result.history[result.best_epoch]["train_loss"],
        "provenance": provenance(
            train_images_sha256=sha256_file(DATA / "train" / "images.npy"),
            val_images_sha256=sha256_file(DATA / "val" / "images.npy"),
            checkpoint_sha256=sha256_file(CHECKPOINT / "model.pt"),
            device=str(device), precision=precision)})


if __name__ == "__main__":
    run_stage("train", train)
