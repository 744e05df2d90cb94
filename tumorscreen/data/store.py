"""The preprocessed arrays on disk: one directory per split, so a stage depends only on the
splits it reads (the holdout is never a dependency of fine-tuning or thresholds).

Layout: ``<root>/<split>/images.npy`` (N, S, S) uint8, ``masks.npy`` (N, S, S) bool and
``manifest.csv`` (N rows, same order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # (N, S, S) uint8, memory-mapped when loaded
    masks: np.ndarray  # (N, S, S) bool
    manifest: pd.DataFrame  # N rows, one per image, in array order


def write_split(folder: Path, images: np.ndarray, masks: np.ndarray,
                manifest: pd.DataFrame) -> None:
    """Write one split: (N, S, S) uint8 images, (N, S, S) bool masks, N manifest rows."""
    if not len(images) == len(masks) == len(manifest):
        raise ValueError(f"{folder}: {len(images)} images, {len(masks)} masks, "
                         f"{len(manifest)} manifest rows")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    np.save(folder / "masks.npy", np.ascontiguousarray(masks, dtype=bool))
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


@dataclass(frozen=True)
class Scratch:
    """Row-addressed arrays in ``.npy`` files that pool workers write in place, so image
    results never travel through pipes and memory stays bounded by the page cache."""

    folder: Path
    count: int
    size: int

    DTYPES: ClassVar[dict[str, type]] = {
        "prepared": np.float32, "mask": np.bool_, "output": np.uint8}

    @classmethod
    def bytes_needed(cls, count: int, size: int) -> int:
        return sum(np.dtype(t).itemsize for t in cls.DTYPES.values()) * count * size * size

    def create(self) -> Scratch:
        for name, dtype in self.DTYPES.items():
            np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=dtype,
                                      shape=(self.count, self.size, self.size)).flush()
        return self

    def array(self, name: str) -> np.ndarray:
        """One scratch array, memory-mapped read-write: (count, size, size)."""
        return np.load(self.folder / f"{name}.npy", mmap_mode="r+")
