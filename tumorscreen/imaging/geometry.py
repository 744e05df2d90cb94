"""Crop to the head and fit into the square model input without stretching."""

from __future__ import annotations

import cv2
import numpy as np


def mask_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """Bounding box ``(y0, y1, x0, x1)`` (end-exclusive) of a (H, W) mask, grown on every side
    by ``margin`` x the box's longer side and clipped to the frame. The whole frame when the
    mask is empty.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    if rows.size == 0:
        return 0, height, 0, width
    grow = round(margin * max(rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]))
    return (int(max(0, rows[0] - grow)), int(min(height, rows[-1] + 1 + grow)),
            int(max(0, cols[0] - grow)), int(min(width, cols[-1] + 1 + grow)))


def fit_square(image: np.ndarray, size: int, nearest: bool = False) -> tuple[np.ndarray, float]:
    """Scale (H, W) so its longer side is ``size`` and pad the shorter one with zeros, centred.

    Returns the (size, size) array, same dtype, and the scale factor. Area averaging when
    shrinking, linear when enlarging, nearest neighbour for masks and labels.
    """
    height, width = image.shape
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if nearest:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    source = image.astype(np.uint8) if image.dtype == bool else image
    resized = cv2.resize(source, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size), dtype=source.dtype)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return (out.astype(bool) if image.dtype == bool else out), scale
