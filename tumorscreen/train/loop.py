"""A flat, explicit two-phase training loop.

Phase 1 (warm-up): the backbone is frozen (no gradients, BatchNorm statistics fixed) and
only the head learns. Phase 2 (fine-tune): everything learns, the backbone at a lower
rate than the head, with cosine decay per step. Early stopping watches the val loss (or
the val loss after a temperature fitted on val, ``keep_by``), and the best epoch's
weights are kept. Optionally the weights of the last full-phase epochs are averaged
(stochastic weight averaging) and compete on val with the best single epoch.
Optionally the training images the warmed-up network gets wrong weigh more in the full
phase (Just Train Twice, Liu et al. 2021, with the warm-up as the first training).
Optionally, within each class, images weigh by the size of their cluster in the frozen
ImageNet features (hidden subclasses such as scan plane and sequence; after Sohoni et al.
2020), so a look that is rare within a class is not learnt as evidence against it.
Optionally the full phase takes sharpness-aware steps (SAM, Foret et al. 2021).
Optionally the kept weights' BatchNorm statistics are recomputed with stochastic depth and
dropout off, as inference runs them (the variance shift of Li et al. 2019).
Optionally each batch also carries a few images of the external site's adapt split, which
are labelled tumour or healthy only: their loss is the binary cross-entropy of the tumour
logit, so the type distinctions come from the internal images alone (joint training, in
place of adapting after the fact).
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.preprocessing import normalize
from timm.utils import ModelEmaV3
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.calibration import calibrated_nll
from tumorscreen.metrics.classification import accuracy, macro_f1
from tumorscreen.metrics.report import tumor_auroc
from tumorscreen.models.backbones import ScreenNet
from tumorscreen.models.predict import input_batches, pooled_features, predict_logits, to_input
from tumorscreen.models.score import NO_TUMOR, tumor_logit
from tumorscreen.train.augment import AugmentConfig, augment_batch
from tumorscreen.train.device import autocast

IMBALANCE = ("class_weights", "group_weights", "cluster_weights", "balanced_sampler", "none")
KEEP_BY = ("loss", "calibrated_loss")  # val scores early stopping and the kept epoch can use
OPTIMIZERS = ("adamw", "sgd")  # the full phase's; the frozen warm-up keeps AdamW
SGD_MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch_size: int = 32
    warmup_epochs: int = 1
    warmup_lr: float = 1e-3
    epochs: int = 10
    lr: float = 1e-3
    backbone_lr_scale: float = 0.1
    layer_decay: float = 1.0  # rate factor per stage nearer the input; 1: one backbone rate
    freeze_stages: int = 0  # input-side stages (stem first) kept fixed in the full phase
    weight_decay: float = 1e-4  # decoupled under AdamW; an L2 term in the loss under SGD
    optimizer: str = "adamw"  # the full phase's: "adamw", or "sgd" (Nesterov momentum 0.9)
    lr_warmup_epochs: float = 0.0  # linear rise of the full phase's rates; 0: cosine from the top
    label_smoothing: float = 0.0
    tumor_loss_weight: float = 0.0  # weight of the tumour-vs-healthy term; 0 turns it off
    focal_gamma: float = 0.0  # focusing exponent on each image's loss; 0: cross-entropy
    ema_decay: float = 0.0  # per-step weight average over the full phase; 0 turns it off
    average_epochs: int = 0  # equal average of the last N full-phase epochs' weights; 0: off
    imbalance: str = "class_weights"
    clusters: int = 12  # feature clusters of imbalance cluster_weights
    cluster_power: float = 0.5  # within a class, image weight ~ cluster size ** -power
    upweight_errors: float = 1.0  # full-phase weight of the warm-up's training misses; 1: off
    sam_rho: float = 0.0  # radius of the full phase's sharpness-aware steps; 0: plain steps
    inference_batchnorm: bool = False  # kept weights' BatchNorm statistics as at inference
    site_weight: float = 0.0  # weight of the adapt split's tumour-vs-healthy term; 0: off
    site_per_batch: int = 4  # adapt images drawn into each batch when site_weight > 0
    zero_init_head: bool = False  # classifier starts at zero: no backbone gradient at first
    patience: int = 3
    keep_by: str = "loss"  # the val score early stopping watches and the kept epoch minimises
    workers: int = 0
    pin_memory: bool = False
    channels_last: bool = False
    device: str = "auto"
    precision: str = "auto"
    probe_steps: int = 3  # timed raw steps after each full-phase epoch; 0: no probe
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        params = dict(params)
        augment = AugmentConfig.from_params(params.pop("augment", {}))
        known = set(cls.__dataclass_fields__) - {"augment"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise TumorScreenError(f"unknown train params: {unknown}")
        cfg = cls(**{key: params[key] for key in known & set(params)}, augment=augment)
        if cfg.imbalance not in IMBALANCE:
            raise TumorScreenError(f"train.imbalance must be one of {IMBALANCE}")
        if cfg.keep_by not in KEEP_BY:
            raise TumorScreenError(f"train.keep_by must be one of {KEEP_BY}")
        if cfg.optimizer not in OPTIMIZERS:
            raise TumorScreenError(f"train.optimizer must be one of {OPTIMIZERS}")
        if cfg.batch_size < 2 or cfg.epochs < 0 or cfg.warmup_epochs < 0:
            raise TumorScreenError("train.batch_size must be >= 2 and epochs >= 0")
        if cfg.clusters < 2 or not 0 < cfg.cluster_power <= 1:
            raise TumorScreenError("train.clusters must be >= 2 and train.cluster_power in "
                                   "(0, 1]")
        if not 0 <= cfg.lr_warmup_epochs < max(cfg.epochs, 1):
            raise TumorScreenError("train.lr_warmup_epochs must be >= 0 and below train.epochs")
        if not 0 < cfg.layer_decay <= 1:
            raise TumorScreenError("train.layer_decay must be in (0, 1]")
        if cfg.sam_rho < 0:
            raise TumorScreenError("train.sam_rho must be >= 0")
        if cfg.site_weight < 0 or cfg.site_per_batch < 1:
            raise TumorScreenError("train.site_weight must be >= 0 and train.site_per_batch "
                                   ">= 1")
        if cfg.tumor_loss_weight < 0 or cfg.focal_gamma < 0:
            raise TumorScreenError("train.tumor_loss_weight and train.focal_gamma must be >= 0")
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise TumorScreenError("train.ema_decay must be in [0, 1)")
        if cfg.upweight_errors < 1 or (cfg.upweight_errors > 1 and not cfg.warmup_epochs):
            raise TumorScreenError("train.upweight_errors must be >= 1, and above 1 it needs "
                                   "train.warmup_epochs >= 1 (the warm-up finds the misses)")
        if cfg.average_epochs < 0 or (cfg.average_epochs and cfg.ema_decay):
            raise TumorScreenError("train.average_epochs must be >= 0 and is not stacked "
                                   "with train.ema_decay (both average the weights)")
        return cfg


@dataclass
class FitResult:
    model: ScreenNet  # holds the kept weights: the best epoch's, or the average's
    best_epoch: int  # the best single epoch (index into history)
    history: list[dict[str, float]]
    val_scores: dict[str, float]  # of the kept weights
    averaged_epochs: list[int]  # the epochs whose average was kept; empty: best_epoch's
    average_scores: dict[str, float] | None  # val scores of the average, kept or not
    train_seconds: float  # time inside training batches (loading, augmenting, stepping)
    train_images: int
    stopped_early: bool
    raw_images_per_s: list[float]  # the raw probe after each full-phase epoch
    upweighted_images: int | None = None  # warm-up misses weighted up; None: option off
    cluster_counts: list[list[int]] | None = None  # images per (cluster, class); None: off


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, (N,) int labels -> (K,), mean 1 over the samples."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        raise TumorScreenError(f"a class has no training images: counts {counts.tolist()}")
    return len(labels) / (num_classes * counts)


def group_weights(labels: np.ndarray, groups: np.ndarray, num_classes: int,
                  power: float = 1.0) -> np.ndarray:
    """(N,) int labels and (N,) group ids -> (N,) image weights, mean 1.

    Every class carries the same total weight, as with class weights, and within a class an
    image in a group of s weighs s ** -power: at power 1 every group carries the same
    weight (a near-duplicate group of s images counts once), below 1 large groups keep part
    of their size's share.
    """
    frame = pd.DataFrame({"label": labels, "group": groups})
    sizes = frame.groupby(["label", "group"])["group"].transform("size").to_numpy()
    within = sizes.astype(np.float64) ** -power
    per_class = np.bincount(labels, weights=within, minlength=num_classes)
    if (per_class == 0).any():
        counts = np.bincount(labels, minlength=num_classes)
        raise TumorScreenError(f"a class has no training images: counts {counts.tolist()}")
    weights = within / per_class[labels]
    return weights * len(labels) / weights.sum()


def feature_clusters(model: ScreenNet, images: np.ndarray, count: int, seed: int,
                     device: torch.device, precision: str, batch_size: int = 64,
                     channels_last: bool = False) -> np.ndarray:
    """(N, S, S) uint8 images -> (N,) cluster ids in [0, count): k-means (cosine, seeded)
    on the network's pooled features, the input of its head."""
    features = pooled_features(model, images, device, precision, batch_size, channels_last)
    return KMeans(count, n_init=10, random_state=seed).fit_predict(normalize(features))


def cluster_weights(model: ScreenNet, train: tuple[np.ndarray, np.ndarray], num_classes: int,
                    cfg: TrainConfig, device: torch.device, precision: str
                    ) -> tuple[np.ndarray, list[list[int]]]:
    """(N,) image weights of ``group_weights`` over the ``feature_clusters`` of the (N, S, S)
    training images, and the images per (cluster, class)."""
    clusters = feature_clusters(model, train[0], cfg.clusters, cfg.seed, device, precision,
                                cfg.batch_size, cfg.channels_last)
    counts = np.zeros((cfg.clusters, num_classes), dtype=int)
    np.add.at(counts, (clusters, train[1]), 1)
    return group_weights(train[1], clusters, num_classes, cfg.cluster_power), counts.tolist()


def error_weights(logits: np.ndarray, labels: np.ndarray, factor: float) -> np.ndarray:
    """(N, K) logits and (N,) int labels -> (N,) weights: ``factor`` where the arg-max
    misses the label, 1 elsewhere."""
    return np.where(logits.argmax(axis=1) != labels, factor, 1.0)


def upweight_misses(model: nn.Module, train: tuple[np.ndarray, np.ndarray],
                    base: np.ndarray | None, cfg: TrainConfig, device: torch.device,
                    precision: str) -> tuple[np.ndarray, int]:
    """(N,) image weights ``base`` (ones when None) times ``cfg.upweight_errors`` on the
    (N, S, S) training images ``model`` calls wrongly, rescaled to mean 1; and how many."""
    logits = predict_logits(model, train[0], device, precision, cfg.batch_size,
                            cfg.channels_last)
    misses = error_weights(logits, train[1], cfg.upweight_errors)
    weighted = misses if base is None else base * misses
    return weighted * len(weighted) / weighted.sum(), int((misses > 1).sum())


def screening_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
                   cfg: TrainConfig, image_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of (B, K) logits on (B,) labels, plus ``cfg.tumor_loss_weight`` times
    the binary cross-entropy of their tumour logit (tumour vs healthy).

    The binary term makes calling a tumour healthy (or the reverse) cost more than
    confusing two tumour types. Class ``weights`` (K,) or ``image_weights`` (B,), when
    given, weight both terms alike (each a weighted mean over the batch). With
    ``cfg.focal_gamma`` g > 0, each image's cross-entropy is scaled by (1 - p_true)^g
    (the focal loss, without its class weight alpha: imbalance is handled by the weights).
    """
    class_weighted = image_weights is None
    if class_weighted:
        image_weights = torch.ones_like(labels, dtype=logits.dtype) if weights is None \
            else weights[labels]
    if class_weighted and cfg.focal_gamma == 0:
        loss = F.cross_entropy(logits, labels, weight=weights,
                               label_smoothing=cfg.label_smoothing)
    else:
        cross_entropy = F.cross_entropy(logits, labels, reduction="none",
                                        label_smoothing=cfg.label_smoothing)
        loss = weighted_mean(cross_entropy * focal_factor(logits, labels, cfg.focal_gamma),
                             image_weights)
    if cfg.tumor_loss_weight == 0:
        return loss
    per_image = tumor_bce(logits, labels != NO_TUMOR, reduction="none")
    return loss + cfg.tumor_loss_weight * weighted_mean(per_image, image_weights)


def focal_factor(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p_true)^gamma per image, from (B, K) logits and (B,) labels -> (B,); ones at
    gamma 0. Confident, correct images then weigh little against the hard ones."""
    if gamma == 0:
        return torch.ones_like(labels, dtype=logits.dtype)
    true_probability = torch.softmax(logits, dim=1).gather(1, labels[:, None])[:, 0]
    return (1.0 - true_probability) ** gamma


def tumor_bce(logits: torch.Tensor, targets: torch.Tensor,
              reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of (B,) 1/0 tumour targets on the tumour logit of (B, K) logits:
    their mean, or (B,) per image with ``reduction="none"``."""
    return F.binary_cross_entropy_with_logits(tumor_logit(logits), targets.float(),
                                              reduction=reduction)


def model_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
               weights: torch.Tensor | None, cfg: TrainConfig,
               image_weights: torch.Tensor | None, device: torch.device,
               precision: str, site_targets: torch.Tensor | None = None) -> torch.Tensor:
    """``screening_loss`` of ``model``'s logits on one batch, the forward pass under
    ``precision``. With (M,) 1/0 ``site_targets``, the last M rows of ``inputs`` are site
    images, and their ``tumor_bce`` is added at ``cfg.site_weight``."""
    with autocast(device, precision):
        logits = model(inputs).float()
        loss = screening_loss(logits[:len(labels)], labels, weights, cfg, image_weights)
        if site_targets is None:
            return loss
        return loss + cfg.site_weight * tumor_bce(logits[len(labels):], site_targets)


def random_batch(images: np.ndarray, labels: np.ndarray, count: int, augment: AugmentConfig,
                 device: torch.device, channels_last: bool, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` rows drawn with replacement from (M, S, S) uint8 ``images`` and their (M,)
    ``labels``, augmented: (inputs (count, 1, S, S), labels (count,)), both on ``device``."""
    rows = torch.randint(len(labels), (count,), generator=generator).numpy()
    inputs = augment_batch(to_input(torch.from_numpy(images[rows]), device, channels_last),
                           augment, generator)
    return inputs, torch.from_numpy(labels[rows]).to(device)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * v) / sum(w) over (B,) values and weights."""
    return (weights * values).sum() / weights.sum()


def train_loader(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig,
                 generator: torch.Generator, image_weights: np.ndarray | None = None
                 ) -> DataLoader:
    """Shuffled (or class-balanced) batches of (uint8 images, labels, image weights: ones
    when not given), last partial batch dropped."""
    if image_weights is None:
        image_weights = np.ones(len(labels))
    dataset = TensorDataset(torch.from_numpy(np.ascontiguousarray(images)),
                            torch.from_numpy(labels),
                            torch.from_numpy(image_weights.astype(np.float32)))
    sampler = None
    if cfg.imbalance == "balanced_sampler":
        per_image = class_weights(labels, int(labels.max()) + 1)[labels]
        sampler = WeightedRandomSampler(per_image, len(labels), generator=generator)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None,
                      sampler=sampler, generator=generator, drop_last=len(labels) > cfg.batch_size,
                      num_workers=cfg.workers, pin_memory=cfg.pin_memory,
                      persistent_workers=cfg.workers > 0)


def set_frozen_backbone(model: ScreenNet, frozen: bool, early_stages: int = 0) -> None:
    """Freeze or release the backbone; frozen BatchNorm layers keep their statistics.

    Released, the first ``early_stages`` stages keep fixed weights (their BatchNorm layers
    still adapt their statistics): generic low-level filters, and at high resolution the
    costliest part of the backward pass, which then stops above them.
    """
    for parameter in model.backbone_parameters():
        parameter.requires_grad_(not frozen)
    for parameter in model.early_stage_parameters(0 if frozen else early_stages):
        parameter.requires_grad_(False)
    model.train()
    if frozen:
        model.backbone.eval()
        model.backbone.get_submodule(model.head).train()


def zero_head(model: ScreenNet) -> None:
    """Set the classifier's weights and bias to zero.

    The backbone's first gradient then vanishes, and its early steps follow a head fitted
    to its features rather than a random one, which would pull the pretrained features
    about while the head settles.
    """
    with torch.no_grad():
        for parameter in model.head_parameters():
            parameter.zero_()


def differential_optimizer(model: ScreenNet, lr: float, backbone_lr_scale: float,
                           weight_decay: float, layer_decay: float = 1.0,
                           kind: str = "adamw") -> torch.optim.Optimizer:
    """AdamW (or SGD with Nesterov momentum, ``kind="sgd"``) with the backbone at
    ``lr * backbone_lr_scale`` and the head at ``lr``.

    With ``layer_decay`` d < 1 the backbone's input-side stages learn slower the nearer the
    input they sit: of n stages (stem first), stage i at ``lr * backbone_lr_scale *
    d ** (n - i)``; the layers above them at ``lr * backbone_lr_scale``.
    """
    top = lr * backbone_lr_scale
    staged = [model.stage_parameters(i) for i in range(len(model.stages))] \
        if layer_decay < 1 else []
    in_stages = {id(p) for stage in staged for p in stage}
    groups = [{"params": stage, "lr": top * layer_decay ** (len(staged) - i)}
              for i, stage in enumerate(staged)]
    groups += [{"params": [p for p in model.backbone_parameters() if id(p) not in in_stages],
                "lr": top},
               {"params": model.head_parameters(), "lr": lr}]
    groups = [group for group in groups if group["params"]]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=SGD_MOMENTUM, nesterov=True,
                               weight_decay=weight_decay)
    return torch.optim.AdamW(groups, weight_decay=weight_decay)


def make_optimizer(model: ScreenNet, cfg: TrainConfig, frozen: bool) -> torch.optim.Optimizer:
    if frozen:
        return torch.optim.AdamW([{"params": model.head_parameters(), "lr": cfg.warmup_lr}],
                                 weight_decay=cfg.weight_decay)
    return differential_optimizer(model, cfg.lr, cfg.backbone_lr_scale, cfg.weight_decay,
                                  cfg.layer_decay, cfg.optimizer)


def full_phase_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                        warmup_steps: int = 0, start_factor: float = 0.01
                        ) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step rates: a linear rise from ``start_factor`` times each group's rate over
    ``warmup_steps`` (torchvision's reference recipe), then cosine decay to zero over the rest.
    """
    total_steps = max(1, total_steps)
    warmup_steps = min(warmup_steps, total_steps - 1)  # at least one step of the decay
    if warmup_steps <= 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    rise = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=start_factor,
                                             total_iters=warmup_steps)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                       T_max=total_steps - warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, decay],
                                                 milestones=[warmup_steps])


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler,
                   schedule: torch.optim.lr_scheduler.LRScheduler | None) -> None:
    """One backward pass and update (loss scaling for fp16), then the per-step schedule."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if schedule is not None:
        schedule.step()


@contextmanager
def batchnorm_momentum(model: nn.Module, momentum: float | None) -> Iterator[list[nn.Module]]:
    """Every BatchNorm layer of ``model`` at ``momentum`` (None: a cumulative average)
    inside the block, its own momentum restored after; yields the layers."""
    norms = [module for module in model.modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum = momentum
    try:
        yield norms
    finally:
        for norm, kept in zip(norms, momenta, strict=True):
            norm.momentum = kept


@contextmanager
def fixed_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise by the batch but leave their running statistics as they
    are (momentum 0): for a second pass over the same batch."""
    with batchnorm_momentum(model, 0.0):
        yield


@torch.no_grad()
def inference_batchnorm_statistics(model: nn.Module, images: np.ndarray, cfg: TrainConfig,
                                   device: torch.device, precision: str) -> None:
    """BatchNorm statistics from one pass over the (N, S, S) un-augmented images, every
    other layer as at inference (stochastic depth and dropout off): dropped residual
    branches widen the activations training measured, which inference never sees (the
    variance shift, Li et al. 2019). Written here: ``update_bn`` runs every layer in
    training mode. ``model`` is left in eval mode."""
    model.eval()
    with batchnorm_momentum(model, None) as norms:
        for norm in norms:
            norm.reset_running_stats()
            norm.train()
        for inputs in input_batches(images, cfg.batch_size, device, cfg.channels_last):
            with autocast(device, precision):
                model(inputs)
    model.eval()


def sharpness_aware_step(model: nn.Module, batch_loss: Callable[[], torch.Tensor],
                         optimizer: torch.optim.Optimizer, rho: float,
                         schedule: torch.optim.lr_scheduler.LRScheduler | None
                         ) -> torch.Tensor:
    """One SAM update (Foret et al. 2021): the gradient at the weights moved ``rho`` along
    their normalised gradient (the worst point nearby, to first order), applied by
    ``optimizer`` at the weights themselves; returns the loss at the weights.
    ``batch_loss`` recomputes the loss of one fixed batch. Written here: no library in the
    stack provides SAM."""
    loss = batch_loss()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]
              if p.grad is not None]
    with torch.no_grad():
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        shifts = [p.grad * (rho / (norm + 1e-12)) for p in params]
        torch._foreach_add_(params, shifts)
    optimizer.zero_grad(set_to_none=True)
    with fixed_batchnorm_statistics(model):
        batch_loss().backward()
    with torch.no_grad():
        torch._foreach_sub_(params, shifts)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    return loss


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The equal average of floating-point tensors across state dicts; other tensors (batch
    counters) from the last."""
    return {key: torch.stack([state[key] for state in states]).mean(dim=0)
            if value.is_floating_point() else value for key, value in states[-1].items()}


def recompute_batchnorm(model: nn.Module, loader: DataLoader, cfg: TrainConfig,
                        device: torch.device, precision: str,
                        generator: torch.Generator) -> None:
    """BatchNorm statistics for averaged weights, from one pass over the training batches,
    augmented as in training (averaged running statistics do not match averaged weights)."""
    inputs = (augment_batch(to_input(batch, device, cfg.channels_last), cfg.augment, generator)
              for batch, *_ in loader)
    with autocast(device, precision):
        update_bn(inputs, model)


def weight_soup(models: list[nn.Module], train: tuple[np.ndarray, np.ndarray],
                cfg: TrainConfig, device: torch.device, precision: str) -> nn.Module:
    """One network from several fine-tuned from the same pretrained weights: the equal
    average of their weights (a uniform model soup, Wortsman et al. 2022), its BatchNorm
    statistics recomputed over the (images (N, S, S) uint8, labels (N,)) training batches
    as after an epoch average. The first of ``models`` holds the soup, in eval mode."""
    soup = models[0].to(device)
    soup.load_state_dict(average_states([model.state_dict() for model in models]))
    if cfg.channels_last:
        soup.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(cfg.seed)
    recompute_batchnorm(soup, train_loader(*train, cfg, generator), cfg, device, precision,
                        generator)
    return soup.eval()


def evaluate_split(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                   device: torch.device, precision: str, cfg: TrainConfig) -> dict[str, float]:
    """Loss, loss after the temperature fitted on the same logits (``calibrated_loss``),
    accuracy, macro-F1 and (when both sides are present) tumour-vs-healthy AUROC of one
    view of (N, S, S) images."""
    logits = predict_logits(model, images, device, precision, cfg.batch_size,
                            cfg.channels_last)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    predicted = logits.argmax(axis=1)
    scores = {"loss": loss, "calibrated_loss": calibrated_nll(logits, labels),
              "accuracy": accuracy(labels, predicted),
              "macro_f1": macro_f1(labels, predicted, logits.shape[1])}
    tumour_auroc = tumor_auroc(logits, labels)
    if np.isfinite(tumour_auroc):
        scores["tumor_auroc"] = tumour_auroc
    return scores


def fit(model: ScreenNet, train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray], cfg: TrainConfig, device: torch.device,
        precision: str, log: Callable[[dict[str, float]], None] = lambda row: None,
        groups: np.ndarray | None = None,
        site: tuple[np.ndarray, np.ndarray] | None = None) -> FitResult:
    """Train on (images (N, S, S) uint8, labels (N,) int64); keep the epoch with the best
    val ``cfg.keep_by`` (the loss, or the loss after a temperature fitted on val).

    ``groups`` (N,) holds the training images' near-duplicate group ids, needed by
    ``imbalance: group_weights``. ``site`` (images (M, S, S) uint8, 1/0 tumour (M,)) is
    the external adapt split, needed when ``cfg.site_weight`` > 0.

    With ``cfg.ema_decay`` > 0, an exponential moving average of the weights is kept over
    the full phase, and it (not the live weights) is what val scores and what is kept.
    """
    if cfg.sam_rho and precision == "fp16":
        raise TumorScreenError("train.sam_rho needs fp32 or bf16: fp16's loss scaling does "
                               "not carry through the perturbed step")
    if cfg.site_weight and (site is None or len(site[1]) == 0):
        raise TumorScreenError("train.site_weight > 0 needs the site's adapt images")
    generator = torch.Generator().manual_seed(cfg.seed)
    num_classes = model.backbone.get_submodule(model.head).out_features
    weights = None
    if cfg.imbalance == "class_weights":
        weights = torch.tensor(class_weights(train[1], num_classes), dtype=torch.float32,
                               device=device)
    per_image, cluster_counts = None, None
    if cfg.imbalance == "group_weights":
        if groups is None:
            raise TumorScreenError("train.imbalance group_weights needs the group ids")
        per_image = group_weights(train[1], groups, num_classes)
    if cfg.zero_init_head:
        zero_head(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.imbalance == "cluster_weights":  # the features the frozen warm-up trains on
        per_image, cluster_counts = cluster_weights(model, train, num_classes, cfg, device,
                                                    precision)
    loader = train_loader(*train, cfg, generator, per_image)
    upweighted = None
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state, waited = float("inf"), -1, None, 0
    seconds, seen, raw = 0.0, 0, []
    phases = [True] * cfg.warmup_epochs + [False] * cfg.epochs
    finetune_steps = max(1, cfg.epochs * len(loader))
    optimizer, schedule, ema = None, None, None
    tail: deque[tuple[int, dict[str, torch.Tensor]]] = deque(maxlen=cfg.average_epochs)
    for epoch, frozen in enumerate(phases):
        if epoch == cfg.warmup_epochs and cfg.upweight_errors > 1:
            if per_image is None and weights is not None:  # class weights, per image
                per_image = weights.cpu().numpy()[train[1]]
            per_image, upweighted = upweight_misses(model, train, per_image, cfg, device,
                                                    precision)
            loader = train_loader(*train, cfg, generator, per_image)
        if optimizer is None or epoch == cfg.warmup_epochs:
            optimizer = make_optimizer(model, cfg, frozen)
            schedule = None if frozen else full_phase_schedule(
                optimizer, finetune_steps, round(cfg.lr_warmup_epochs * len(loader)))
            if not frozen and cfg.ema_decay > 0:
                ema = ModelEmaV3(model, decay=cfg.ema_decay)
        set_frozen_backbone(model, frozen, cfg.freeze_stages)
        start, total_loss, images_seen = time.perf_counter(), torch.zeros((), device=device), 0
        forwarded = 0  # site images pass forward and back too, so throughput counts them
        for batch, labels, batch_weights in loader:
            inputs = augment_batch(to_input(batch, device, cfg.channels_last), cfg.augment,
                                   generator)
            labels = labels.to(device, non_blocking=True)
            site_targets = None
            if cfg.site_weight:
                site_inputs, site_targets = random_batch(*site, cfg.site_per_batch,
                                                         cfg.augment, device,
                                                         cfg.channels_last, generator)
                inputs = torch.cat([inputs, site_inputs])
            batch_loss = partial(model_loss, model, inputs, labels, weights, cfg,
                                 None if per_image is None else batch_weights.to(device),
                                 device, precision, site_targets)
            if cfg.sam_rho and not frozen:
                loss = sharpness_aware_step(model, batch_loss, optimizer, cfg.sam_rho,
                                            schedule)
            else:
                loss = batch_loss()
                optimizer_step(loss, optimizer, scaler, schedule)
            if ema is not None:
                ema.update(model)
            total_loss += loss.detach() * len(labels)  # no per-step host sync on CUDA
            images_seen, forwarded = images_seen + len(labels), forwarded + len(inputs)
        elapsed = time.perf_counter() - start
        if not frozen:
            seconds, seen = seconds + elapsed, seen + forwarded
            if cfg.probe_steps:  # after each full epoch: the same minutes as the loop
                raw.append(raw_images_per_second(model, cfg.batch_size, train[0].shape[-1],
                                                 device, precision, cfg.channels_last,
                                                 cfg.probe_steps, cfg.freeze_stages,
                                                 passes=2 if cfg.sam_rho else 1))
        scored = model if ema is None else ema.module
        scores = evaluate_split(scored, *val, device, precision, cfg)
        row = {"epoch": epoch, "frozen": float(frozen),
               "train_loss": total_loss.item() / max(images_seen, 1),
               "images_per_s": forwarded / max(elapsed, 1e-9),
               "lr": optimizer.param_groups[-1]["lr"],
               **{f"val_{key}": value for key, value in scores.items()}}
        history.append(row)
        log(row)
        if not frozen and cfg.average_epochs:
            tail.append((epoch, {key: value.detach().to("cpu", copy=True)
                                 for key, value in model.state_dict().items()}))
        if scores[cfg.keep_by] < best_loss:
            best_loss, best_epoch, waited = scores[cfg.keep_by], epoch, 0
            best_state = copy.deepcopy(scored.state_dict())
        elif not frozen:
            waited += 1
            if waited >= cfg.patience:
                break
    kept_scores = {key[4:]: value for key, value in history[best_epoch].items()
                   if key.startswith("val_")} if history else {}
    averaged: list[int] = []
    average_scores = None
    if len(tail) > 1:  # the average competes with the best epoch on the same val loss
        model.load_state_dict(average_states([state for _, state in tail]))
        recompute_batchnorm(model, loader, cfg, device, precision, generator)
        average_scores = evaluate_split(model, *val, device, precision, cfg)
        if average_scores[cfg.keep_by] < best_loss:
            best_state, kept_scores = copy.deepcopy(model.state_dict()), average_scores
            averaged = [epoch for epoch, _ in tail]
    if best_state is not None:
        model.load_state_dict(best_state)
    set_frozen_backbone(model, False)
    if cfg.inference_batchnorm:
        inference_batchnorm_statistics(model, train[0], cfg, device, precision)
        kept_scores = evaluate_split(model, *val, device, precision, cfg)
    return FitResult(model.eval(), best_epoch, history, kept_scores, averaged,
                     average_scores, seconds, seen,
                     stopped_early=len(history) < len(phases), raw_images_per_s=raw,
                     upweighted_images=upweighted,
                     cluster_counts=cluster_counts)


def raw_images_per_second(model: ScreenNet, batch_size: int, size: int, device: torch.device,
                          precision: str, channels_last: bool, steps: int = 5,
                          early_stages: int = 0, passes: int = 1) -> float:
    """Forward+backward throughput of a copy of ``model`` on random tensors (no data loading,
    no augmentation), with the full phase's frozen stages: the ceiling the training loop is
    compared against; ``passes`` forward+backward passes make one step (2 for SAM). The
    random state is restored afterwards (its inputs and dropout draw from it), so probing
    between epochs leaves the training bit-for-bit as it was."""
    accelerator = [device] if device.type in ("cuda", "mps") else []  # CPU is always forked
    with torch.random.fork_rng(devices=accelerator,
                               device_type=device.type if accelerator else None):
        probe = copy.deepcopy(model).to(device)
        set_frozen_backbone(probe, False, early_stages)
        inputs = torch.rand(batch_size, 1, size, size, device=device)
        if channels_last:
            probe, inputs = (probe.to(memory_format=torch.channels_last),
                             inputs.contiguous(memory_format=torch.channels_last))
        labels = torch.zeros(batch_size, dtype=torch.long, device=device)
        timings = []
        for _ in range(steps + 1):  # the first step warms up allocators and kernels
            start = time.perf_counter()
            for _ in range(passes):
                with autocast(device, precision):
                    loss = F.cross_entropy(probe(inputs).float(), labels)
                loss.backward()
            probe.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings.append(time.perf_counter() - start)
    return batch_size / float(np.median(timings[1:]))
