"""The preprocessed arrays on disk: one directory per split, so a stage depends only on the
splits it reads (the holdout is never a dependency of fine-tuning or thresholds).

Layout: ``<root>/<split>/images.npy`` (N, S, S) uint8, ``masks.npy`` (N, S, S) bool and
``manifest.csv`` (N rows, same order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # (N, S, S) uint8, memory-mapped when loaded
    masks: np.ndarray  # (N, S, S) bool
    manifest: pd.DataFrame  # N rows, one per image, in array order


def write_split(folder: Path, images: list[np.ndarray], masks: list[np.ndarray],
                manifest: pd.DataFrame, size: int) -> None:
    """Write one split's arrays and manifest; an empty split gives (0, S, S) arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = (0, size, size)
    np.save(folder / "images.npy", np.stack(images) if images else np.zeros(shape, np.uint8))
    np.save(folder / "masks.npy", np.stack(masks) if masks else np.zeros(shape, bool))
    manifest.to_csv(folder / "manifest.csv", index=False)


def load_split(root: str | Path, split: str, mmap: bool = True) -> SplitArrays:
    """One split's arrays (memory-mapped by default, so DataLoader workers share pages)."""
    folder = Path(root) / split
    mode = "r" if mmap else None
    images = np.load(folder / "images.npy", mmap_mode=mode)
    masks = np.load(folder / "masks.npy", mmap_mode=mode)
    manifest = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    if not len(images) == len(masks) == len(manifest):
        raise ValueError(f"{folder}: {len(images)} images, {len(masks)} masks, "
                         f"{len(manifest)} manifest rows")
    return SplitArrays(images, masks, manifest)
