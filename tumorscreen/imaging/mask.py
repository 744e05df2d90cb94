"""The head/brain mask shared by QC and preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def sqrt_otsu_foreground(gray8: np.ndarray) -> tuple[np.ndarray, float]:
    """Pixels above Otsu's level computed on square-root intensities, (H, W) uint8 0/1, and
    that level on the linear 0-255 scale.

    On linear intensities a bright enhancing tumour or fat pulls Otsu's level above the
    brain and the "head" becomes the lesion; on log intensities background noise rises above
    it. The square root sits between the two and keeps background vs tissue the main split.
    """
    sqrt8 = np.sqrt(np.arange(256) / 255.0) * 255.0
    level, foreground = cv2.threshold((sqrt8 + 0.5).astype(np.uint8)[gray8], 0, 1,
                                      cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return foreground, float(level**2 / 255.0)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def head_mask(gray8: np.ndarray) -> tuple[np.ndarray, float]:
    """Head foreground, (H, W) bool, and the threshold level used (0-255).

    Square-root Otsu, a 3x3 opening in a band along the
    frame's edge against one-pixel frame lines (inside, it would cut thin scalp arcs), a
    closing to bridge the dark skull, the largest connected component, then hole filling
    (the scalp ring encloses the brain). Filling after picking the component keeps the
    interior of a detached frame out of the mask. No median filter: it erases scalp rings
    one or two pixels thin.
    """
    foreground, level = sqrt_otsu_foreground(gray8)
    band = max(2, round(min(gray8.shape) * 0.05))
    edge = np.ones(gray8.shape, bool)
    edge[band:-band, band:-band] = False
    opened = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, _disk(1))
    foreground = np.where(edge, opened, foreground)
    radius = max(1, round(min(gray8.shape) * 0.02))
    closed = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, _disk(radius))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if count <= 1:
        return np.zeros(gray8.shape, bool), level
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return ndimage.binary_fill_holes(labels == largest), level


def brain_mask(gray8: np.ndarray, rim_erosion: float = 0.0) -> np.ndarray:
    """Head mask, optionally eroded by ``rim_erosion`` x the shorter side to drop the scalp.

    ``gray8`` is (H, W) uint8; returns (H, W) bool.
    """
    mask, _level = head_mask(gray8)
    radius = round(min(gray8.shape) * rim_erosion)
    if radius < 1 or not mask.any():
        return mask
    return cv2.erode(mask.astype(np.uint8), _disk(radius)) > 0


def mask_shape(mask: np.ndarray) -> dict[str, float]:
    """Plausibility measures of a (H, W) bool mask.

    ``fraction``: share of the frame inside the mask; ``border_contact``: share of the frame's
    outermost pixels inside it (a head touches the edge a little, a frame or a flooded
    background a lot); ``solidity``: area over convex-hull area (a head is nearly convex).
    """
    area = int(mask.sum())
    if area == 0:
        return {"fraction": 0.0, "border_contact": 0.0, "solidity": 0.0}
    edge = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    points = cv2.findNonZero(mask.astype(np.uint8))
    hull_area = cv2.contourArea(cv2.convexHull(points))
    return {
        "fraction": area / mask.size,
        "border_contact": float(edge.mean()),
        "solidity": min(1.0, area / hull_area) if hull_area > 0 else 0.0,
    }
