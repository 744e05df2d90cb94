"""Batch augmentation limited to what is physically plausible for axial MRI.

Left-right flips (the brain is near-symmetric; up-down is not), small rotations, scaling
and shifts (head position in the scanner), and mild gamma/contrast (scanner windowing).
No vertical flips and no 90-degree turns: the limits are enforced when the config is read.
Runs on the training device, on whole batches, from a seeded CPU generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tumorscreen.errors import TumorScreenError

LIMITS = {"rotation_deg": 10.0, "scale": 0.1, "translate": 0.1, "gamma": 0.3, "contrast": 0.3}


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    flip_lr: float = 0.5  # probability
    rotation_deg: float = 10.0  # uniform in [-r, r]
    scale: float = 0.1  # zoom factor in [1 - s, 1 + s]
    translate: float = 0.1  # shift as a fraction of the side
    gamma: float = 0.2  # log-gamma uniform in [-g, g]
    contrast: float = 0.1  # contrast factor in [1 - c, 1 + c]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AugmentConfig:
        cfg = cls(**params)
        if not 0.0 <= cfg.flip_lr <= 1.0:
            raise TumorScreenError(f"augment.flip_lr must be a probability, got {cfg.flip_lr}")
        for key, limit in LIMITS.items():
            value = getattr(cfg, key)
            if not 0.0 <= value <= limit:
                raise TumorScreenError(f"augment.{key} = {value} is outside [0, {limit}], "
                                       "beyond what is plausible for axial MRI")
        return cfg


def _uniform(count: int, half_width: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(count, generator=generator) * 2 - 1) * half_width


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) images through (N, 2, 3) affine maps in [-1, 1] coordinates, zero fill."""
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape),
                         align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def augment_batch(images: torch.Tensor, cfg: AugmentConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """Augment (N, 1, S, S) float images in [0, 1]; returns a new tensor of the same shape."""
    if not cfg.enabled:
        return images
    count = images.shape[0]
    flip = torch.where(torch.rand(count, generator=generator) < cfg.flip_lr, -1.0, 1.0)
    angle = _uniform(count, math.radians(cfg.rotation_deg), generator)
    zoom = 1.0 + _uniform(count, cfg.scale, generator)
    shift = _uniform(2 * count, 2 * cfg.translate, generator).view(count, 2)  # [-1, 1] coords
    gamma = torch.exp(_uniform(count, cfg.gamma, generator))
    contrast = 1.0 + _uniform(count, cfg.contrast, generator)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
                         torch.stack([sin * flip, cos, shift[:, 1]], dim=1)], dim=1)
    device = images.device
    moved = warp(images, theta).clamp(0.0, 1.0) ** gamma.to(device, images.dtype).view(-1, 1, 1, 1)
    mean = moved.mean(dim=(1, 2, 3), keepdim=True)
    factor = contrast.to(device, images.dtype).view(-1, 1, 1, 1)
    return ((moved - mean) * factor + mean).clamp(0.0, 1.0)
