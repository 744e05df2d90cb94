"""Test-time augmentation with plausible views only: identity, left-right flip and small
rotations either way. Off means the identity view alone, so both settings share one pass."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tumorscreen.errors import TumorScreenError
from tumorscreen.models.predict import checkpoint_logits
from tumorscreen.train.augment import LIMITS, warp

View = Callable[[torch.Tensor], torch.Tensor]
# How many leading views of tta_views() each internal-evaluation mode averages.
TTA_MODES = {"none": 1, "flip": 2, "all": 4}


def _rotation(degrees: float) -> View:
    angle = math.radians(degrees)

    def rotate(images: torch.Tensor) -> torch.Tensor:
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(images), 2, 3)
        return warp(images, theta)

    return rotate


def tta_views(rotation_deg: float) -> dict[str, View | None]:
    """Named views; the first is the identity (None)."""
    if not 0.0 < rotation_deg <= LIMITS["rotation_deg"]:
        raise TumorScreenError(f"tta.rotation_deg must be in (0, {LIMITS['rotation_deg']}]")
    return {"identity": None, "flip_lr": lambda images: torch.flip(images, dims=[-1]),
            f"rotate_+{rotation_deg:g}": _rotation(rotation_deg),
            f"rotate_-{rotation_deg:g}": _rotation(-rotation_deg)}


def view_logits(model: nn.Module, config: dict, images: np.ndarray, device: torch.device,
                rotation_deg: float) -> np.ndarray:
    """Logits of (N, S, S) uint8 images under every view -> (V, N, K), identity first."""
    return np.stack([checkpoint_logits(model, config, images, device, view)
                     for view in tta_views(rotation_deg).values()])


def combine_views(logits: np.ndarray, tta: bool) -> np.ndarray:
    """(V, N, K) view logits -> (N, K): the mean over views with TTA, the identity without."""
    return logits.mean(axis=0) if tta else logits[0]


def mode_logits(model: nn.Module, config: dict, images: np.ndarray, device: torch.device,
                mode: str, rotation_deg: float) -> np.ndarray:
    """Logits of (N, S, S) uint8 images -> (N, K), averaged over the views of ``mode``:
    ``none`` (identity), ``flip`` (identity and left-right flip) or ``all`` (every view)."""
    if mode not in TTA_MODES:
        raise TumorScreenError(f"tta.internal must be one of {sorted(TTA_MODES)}, got {mode!r}")
    views = list(tta_views(rotation_deg).values())[:TTA_MODES[mode]]
    return np.mean([checkpoint_logits(model, config, images, device, view) for view in views],
                   axis=0)
