"""Site adaptation: fine-tune the trained model on a new site's adapt split, selecting the
epoch on its tune split.

The site loss matches the decision rule: binary cross-entropy on the tumour logit
(``logsumexp(tumour logits) - no_tumor logit``), the log-odds behind ``tumor_score``. A
retain term keeps the 4-class ability: replayed internal train batches (cross-entropy) or
distillation from the frozen base model on the site batch (KL), weighted by a param.
Epoch 0 is the base model itself, so adaptation that never helps on tune keeps it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.calibration import tumor_nll
from tumorscreen.metrics.classification import binary_auroc
from tumorscreen.models.backbones import ScreenNet
from tumorscreen.models.predict import predict_logits, to_input
from tumorscreen.models.score import tumor_score
from tumorscreen.train.augment import AugmentConfig, augment_batch
from tumorscreen.train.data import LabelledImages
from tumorscreen.train.device import autocast
from tumorscreen.train.loop import (
    differential_optimizer,
    full_phase_schedule,
    optimizer_step,
    random_batch,
    tumor_bce,
)

RETAIN = ("replay", "distill", "none")


@dataclass(frozen=True)
class FinetuneConfig:
    seed: int = 0
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    backbone_lr_scale: float = 0.2
    weight_decay: float = 0.01
    patience: int = 4
    retain: str = "replay"
    retain_weight: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any], augment: dict[str, Any]) -> FinetuneConfig:
        unknown = sorted(set(params) - (set(cls.__dataclass_fields__) - {"augment"}))
        if unknown:
            raise TumorScreenError(f"unknown finetune params: {unknown}")
        cfg = cls(**params, augment=AugmentConfig.from_params(augment))
        if cfg.retain not in RETAIN:
            raise TumorScreenError(f"finetune.retain must be one of {RETAIN}")
        if cfg.batch_size < 2 or cfg.epochs < 0 or cfg.retain_weight < 0:
            raise TumorScreenError("finetune needs batch_size >= 2, epochs >= 0, "
                                   "retain_weight >= 0")
        return cfg


@dataclass
class AdaptResult:
    model: ScreenNet  # the best tune-loss epoch's weights
    best_epoch: int  # 0 means the base model was kept
    history: list[dict[str, float]]


def retain_loss(logits: torch.Tensor, site_count: int, cfg: FinetuneConfig,
                teacher: ScreenNet | None, site_inputs: torch.Tensor,
                replay_labels: torch.Tensor | None) -> torch.Tensor:
    """The term that keeps the 4-class ability (zero for ``retain: none``)."""
    if cfg.retain == "replay":
        return F.cross_entropy(logits[site_count:], replay_labels)
    if cfg.retain == "distill" and teacher is not None:
        with torch.no_grad():
            target = F.log_softmax(teacher(site_inputs).float(), dim=1)
        return F.kl_div(F.log_softmax(logits, dim=1), target, log_target=True,
                        reduction="batchmean")
    return logits.new_zeros(())


def site_scores(model: ScreenNet, site: LabelledImages, device: torch.device, precision: str,
                channels_last: bool, batch_size: int) -> dict[str, float]:
    """Tumour-score NLL and AUROC of ``model`` on a labelled site split."""
    logits = predict_logits(model, site.images, device, precision, batch_size, channels_last)
    positives = site.labels.astype(bool)
    return {"loss": tumor_nll(logits, positives),
            "auroc": binary_auroc(positives, tumor_score(logits))}


def train_with_fixed_norms(model: ScreenNet) -> None:
    """Training mode with every BatchNorm layer's statistics fixed: a few small site batches
    would otherwise replace statistics estimated on thousands of images."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def adapt_to_site(model: ScreenNet, site: LabelledImages, tune: LabelledImages,
                  replay: LabelledImages | None, cfg: FinetuneConfig, device: torch.device,
                  precision: str, channels_last: bool,
                  log: Callable[[dict[str, float]], None] = lambda row: None) -> AdaptResult:
    """Fine-tune ``model`` on the site's adapt split; keep the epoch with the lowest tune
    loss (epoch 0 is the model as given)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    teacher = copy.deepcopy(model).eval() if cfg.retain == "distill" else None
    loader = DataLoader(TensorDataset(torch.from_numpy(np.ascontiguousarray(site.images)),
                                      torch.from_numpy(site.labels)),
                        batch_size=cfg.batch_size, shuffle=True, generator=generator)
    optimizer = differential_optimizer(model, cfg.lr, cfg.backbone_lr_scale, cfg.weight_decay)
    schedule = full_phase_schedule(optimizer, cfg.epochs * len(loader))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def evaluate(epoch: int, train_loss: float) -> dict[str, float]:
        scores = site_scores(model, tune, device, precision, channels_last, cfg.batch_size)
        row = {"epoch": epoch, "train_loss": train_loss,
               **{f"tune_{key}": value for key, value in scores.items()}}
        log(row)
        return row

    history = [evaluate(0, float("nan"))]
    best_epoch, best_state, waited = 0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, cfg.epochs + 1):
        train_with_fixed_norms(model)
        total, seen = 0.0, 0
        for batch, targets in loader:
            site_inputs = augment_batch(to_input(batch, device, channels_last), cfg.augment,
                                        generator)
            inputs, replay_labels = site_inputs, None
            if cfg.retain == "replay":
                replay_inputs, replay_labels = random_batch(
                    replay.images, replay.labels, len(batch), cfg.augment, device,
                    channels_last, generator)
                inputs = torch.cat([site_inputs, replay_inputs])
            with autocast(device, precision):
                logits = model(inputs).float()
                loss = tumor_bce(logits[:len(batch)], targets.to(device)) + cfg.retain_weight * \
                    retain_loss(logits, len(batch), cfg, teacher, site_inputs, replay_labels)
            optimizer_step(loss, optimizer, scaler, schedule)
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        history.append(evaluate(epoch, total / max(seen, 1)))
        if history[-1]["tune_loss"] < history[best_epoch]["tune_loss"]:
            best_epoch, best_state, waited = epoch, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return AdaptResult(model.eval(), best_epoch, history)
