"""Contrast-limited adaptive histogram equalisation (CLAHE) at the model's resolution."""

from __future__ import annotations

import cv2
import numpy as np


def clahe(image8: np.ndarray, clip: float, tiles: int) -> np.ndarray:
    """CLAHE of a (H, W) uint8 image on a ``tiles`` x ``tiles`` grid; (H, W) uint8.

    ``clip`` is OpenCV's clip limit: the histogram cap as a multiple of a flat histogram.
    """
    return cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(tiles, tiles)).apply(image8)
