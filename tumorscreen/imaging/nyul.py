"""Nyúl-Udupa histogram standardisation: landmarks fitted on training images, applied to all.

Fitting uses only the images it is given: pass the train split only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_PERCENTILES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)


def image_landmarks(values: np.ndarray, percentiles: Iterable[float]) -> np.ndarray:
    """Intensity percentiles of the in-mask values, (n_landmarks,) float64."""
    return np.percentile(np.asarray(values, dtype=np.float64), list(percentiles))


def fit_standard_landmarks(
    landmarks: np.ndarray, scale: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """The standard scale: each image's landmarks mapped so that its first and last land on
    ``scale``, then averaged. ``landmarks`` is (n_images, n_landmarks); returns (n_landmarks,).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    low, high = landmarks[:, :1], landmarks[:, -1:]
    span = np.maximum(high - low, 1e-12)
    mapped = scale[0] + (landmarks - low) / span * (scale[1] - scale[0])
    return mapped.mean(axis=0)


def apply_standardisation(
    image: np.ndarray, mask: np.ndarray, standard: np.ndarray, percentiles: Iterable[float],
    own: np.ndarray | None = None,
) -> np.ndarray:
    """Map ``image`` (H, W) piecewise-linearly from its own in-mask landmarks to ``standard``.

    Intensities beyond the first and last landmarks follow the end segments' slopes, so the
    mapping stays monotonic over the whole range. ``own``: the image's in-mask landmarks when
    already computed. Returns (H, W) float32.
    """
    if own is None:
        own = image_landmarks(np.asarray(image)[np.asarray(mask) > 0], percentiles)
    own = np.maximum.accumulate(own + np.arange(len(own)) * 1e-9)  # strictly increasing
    values = np.asarray(image, dtype=np.float64)
    out = np.interp(values, own, standard)
    low_slope = (standard[1] - standard[0]) / (own[1] - own[0])
    high_slope = (standard[-1] - standard[-2]) / (own[-1] - own[-2])
    out = np.where(values < own[0], standard[0] + (values - own[0]) * low_slope, out)
    out = np.where(values > own[-1], standard[-1] + (values - own[-1]) * high_slope, out)
    return out.astype(np.float32)
