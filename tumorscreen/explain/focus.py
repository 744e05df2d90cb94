"""The brain focus score: how much of a CAM's evidence lies inside the brain mask."""

from __future__ import annotations

import numpy as np

from tumorscreen.imaging.mask import brain_mask


def focus_score(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's (ReLU'd, un-normalised) energy inside its mask, (N,) in [0, 1].

    ``cams`` (N, S, S) float, ``masks`` (N, S, S) bool. A map with no positive energy has no
    focus: NaN. An empty mask gives 0 for any map with energy.
    """
    energy = np.clip(np.asarray(cams, np.float64), 0.0, None)
    total = energy.sum(axis=(1, 2))
    inside = np.where(masks, energy, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def mask_area_share(masks: np.ndarray) -> np.ndarray:
    """Share of pixels inside each mask, (N, S, S) bool -> (N,): a uniform map's focus score."""
    return np.asarray(masks, bool).mean(axis=(1, 2))


def focus_lift(scores: np.ndarray, area_shares: np.ndarray) -> np.ndarray:
    """Focus score over the mask's area share, (N,): 1 is no better than a uniform map.
    NaN where the mask is empty or the score is undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area_shares > 0, scores / area_shares, np.nan)


def audit_masks(images: np.ndarray, stored: np.ndarray, from_preprocess: bool,
                rim_erosion: float = 0.0) -> np.ndarray:
    """Brain masks on the model's input grid, (N, S, S) bool.

    With the mask step on, these are the masks ``preprocess()`` stored. With it off, the
    stored masks are the whole frame, so the same ``brain_mask`` is computed on each input.
    """
    if from_preprocess:
        return np.asarray(stored, bool)
    return np.stack([brain_mask(image, rim_erosion) for image in images]) if len(images) \
        else np.zeros(np.shape(images), bool)
