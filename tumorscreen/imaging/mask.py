"""The head/brain mask shared by QC and preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def head_mask(gray8: np.ndarray) -> tuple[np.ndarray, float]:
    """Head foreground, (H, W) bool, and the Otsu level used.

    Otsu, a small closing to bridge the dark skull, hole filling (the scalp ring encloses the
    brain), then the largest connected component.
    """
    level, foreground = cv2.threshold(gray8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    radius = max(1, round(min(gray8.shape) * 0.02))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    closed = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, kernel)
    filled = ndimage.binary_fill_holes(closed).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(filled, connectivity=8)
    if count <= 1:
        return np.zeros(gray8.shape, bool), float(level)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest, float(level)


def brain_mask(gray8: np.ndarray, rim_erosion: float = 0.0) -> np.ndarray:
    """Head mask, optionally eroded by ``rim_erosion`` x the shorter side to drop the scalp.

    ``gray8`` is (H, W) uint8; returns (H, W) bool.
    """
    mask, _level = head_mask(gray8)
    radius = round(min(gray8.shape) * rim_erosion)
    if radius < 1 or not mask.any():
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    return cv2.erode(mask.astype(np.uint8), kernel) > 0
