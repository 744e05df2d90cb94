"""Test-time augmentation with plausible views only: identity, left-right flip, small
rotations either way, and the flipped image rotated either way. Off means the identity view
alone, so both settings share one pass."""

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
# How many leading views of tta_views() each mode averages; the external stages use "all".
TTA_MODES = {"none": 1, "flip": 2, "all": 4, "flip_rotate": 6}


def _rotation(degrees: float) -> View:
    angle = math.radians(degrees)

    def rotate(images: torch.Tensor) -> torch.Tensor:
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(images), 2, 3)
        return warp(images, theta)

    return rotate


def _flip(images: torch.Tensor) -> torch.Tensor:
    return torch.flip(images, dims=[-1])


def tta_views(rotation_deg: float) -> dict[str, View | None]:
    """Named views; the first is the identity (None)."""
    if not 0.0 < rotation_deg <= LIMITS["rotation_deg"]:
        raise TumorScreenError(f"tta.rotation_deg must be in (0, {LIMITS['rotation_deg']}]")
    plus, minus = _rotation(rotation_deg), _rotation(-rotation_deg)
    return {"identity": None, "flip_lr": _flip,
            f"rotate_+{rotation_deg:g}": plus, f"rotate_-{rotation_deg:g}": minus,
            f"flip_lr_rotate_+{rotation_deg:g}": lambda images: plus(_flip(images)),
            f"flip_lr_rotate_-{rotation_deg:g}": lambda images: minus(_flip(images))}


def view_logits(model: nn.Module, config: dict, images: np.ndarray, device: torch.device,
                rotation_deg: float, mode: str = "all") -> np.ndarray:
    """Logits of (N, S, S) uint8 images under each view of ``mode`` -> (V, N, K), identity
    first: ``none`` (identity), ``flip`` (and the left-right mirror), ``all`` (and
    +-``rotation_deg``) or ``flip_rotate`` (and the mirror rotated either way)."""
    if mode not in TTA_MODES:
        raise TumorScreenError(f"tta.internal must be one of {sorted(TTA_MODES)}, got {mode!r}")
    views = list(tta_views(rotation_deg).values())[:TTA_MODES[mode]]
    return np.stack([checkpoint_logits(model, config, images, device, view) for view in views])


def combine_views(logits: np.ndarray, tta: bool) -> np.ndarray:
    """(V, N, K) view logits -> (N, K): the mean over views with TTA, the identity without."""
    return logits.mean(axis=0) if tta else logits[0]


def mode_logits(model: nn.Module, config: dict, images: np.ndarray, device: torch.device,
                mode: str, rotation_deg: float) -> np.ndarray:
    """Logits of (N, S, S) uint8 images -> (N, K), averaged over the views of ``mode``."""
    return view_logits(model, config, images, device, rotation_deg, mode).mean(axis=0)
