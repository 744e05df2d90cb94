"""Test-time augmentation with plausible views only: identity, left-right flip, small
rotations either way, the flipped image rotated either way, and both turned twice as far.
Off means the identity view alone, so both settings share one pass."""

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
TTA_MODES = {"none": 1, "flip": 2, "all": 4, "flip_rotate": 6, "flip_rotate_wide": 10}


def _rotation(degrees: float) -> View:
    angle = math.radians(degrees)

    def rotate(images: torch.Tensor) -> torch.Tensor:
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(images), 2, 3)
        return warp(images, theta)

    return rotate


def _flip(images: torch.Tensor) -> torch.Tensor:
    return torch.flip(images, dims=[-1])


def _mirror_rotated(degrees: float) -> View:
    rotate = _rotation(degrees)
    return lambda images: rotate(_flip(images))


def _turned(degrees: float) -> dict[str, View]:
    """The image and its mirror, each turned +-``degrees``."""
    turns = (degrees, -degrees)
    return ({f"rotate_{turn:+g}": _rotation(turn) for turn in turns}
            | {f"flip_lr_rotate_{turn:+g}": _mirror_rotated(turn) for turn in turns})


def tta_views(rotation_deg: float) -> dict[str, View | None]:
    """Named views; the first is the identity (None). The turns by twice ``rotation_deg``
    are included only while they stay within the plausible rotation."""
    limit = LIMITS["rotation_deg"]
    if not 0.0 < rotation_deg <= limit:
        raise TumorScreenError(f"tta.rotation_deg must be in (0, {limit}]")
    views: dict[str, View | None] = {"identity": None, "flip_lr": _flip, **_turned(rotation_deg)}
    if 2 * rotation_deg <= limit:
        views |= _turned(2 * rotation_deg)
    return views


def view_logits(model: nn.Module, config: dict, images: np.ndarray, device: torch.device,
                rotation_deg: float, mode: str = "all") -> np.ndarray:
    """Logits of (N, S, S) uint8 images under each view of ``mode`` -> (V, N, K), identity
    first: ``none`` (identity), ``flip`` (and the left-right mirror), ``all`` (and
    +-``rotation_deg``), ``flip_rotate`` (and the mirror rotated either way) or
    ``flip_rotate_wide`` (and both rotated +-2 ``rotation_deg``)."""
    if mode not in TTA_MODES:
        raise TumorScreenError(f"tta.internal must be one of {sorted(TTA_MODES)}, got {mode!r}")
    views = list(tta_views(rotation_deg).values())
    if len(views) < TTA_MODES[mode]:
        raise TumorScreenError(f"tta.internal {mode} turns by 2 x tta.rotation_deg, which must "
                               f"stay within {LIMITS['rotation_deg']:g} degrees")
    views = views[:TTA_MODES[mode]]
    return np.stack([checkpoint_logits(model, config, images, device, view) for view in views])


def combine_views(logits: np.ndarray, tta: bool) -> np.ndarray:
    """(V, N, K) view logits -> (N, K): the mean over views with TTA, the identity without."""
    return logits.mean(axis=0) if tta else logits[0]


def mode_logits(model: nn.Module, config: dict, images: np.ndarray, device: torch.device,
                mode: str, rotation_deg: float) -> np.ndarray:
    """Logits of (N, S, S) uint8 images -> (N, K), averaged over the views of ``mode``."""
    return view_logits(model, config, images, device, rotation_deg, mode).mean(axis=0)
