"""Labelled image sets from the preprocessed splits: rejected rows are left out, and each
row keeps its manifest entry so every prediction can be traced to its source file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tumorscreen.data.layout import EXTERNAL, INTERNAL
from tumorscreen.data.store import load_split
from tumorscreen.errors import TumorScreenError
from tumorscreen.imaging.qc import REJECT
from tumorscreen.models.score import class_index

BOOTSTRAP_UNITS = ("group", "image")


@dataclass(frozen=True)
class LabelledImages:
    images: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray  # (N,) int64: indices into CLASSES, or 1/0 tumour for the site
    manifest: pd.DataFrame  # N rows, in array order

    def __len__(self) -> int:
        return len(self.labels)

    def resampling_units(self, unit: str) -> np.ndarray | None:
        """(N,) near-duplicate group ids for a group bootstrap (an image without a group is
        its own), or None to resample images."""
        if unit not in BOOTSTRAP_UNITS:
            raise TumorScreenError(f"bootstrap unit must be one of {BOOTSTRAP_UNITS}, got {unit!r}")
        if unit == "image":
            return None
        return self.manifest["group"].fillna(self.manifest["id"]).astype(str).to_numpy()

    def subset(self, keep: np.ndarray) -> LabelledImages:
        """Rows where the (N,) boolean ``keep`` is true, in order."""
        return LabelledImages(self.images[keep], self.labels[keep],
                              self.manifest[keep].reset_index(drop=True))


def _usable(root: str | Path, split: str, dataset: str,
            required: bool) -> tuple[np.ndarray, pd.DataFrame]:
    arrays = load_split(root, split, mmap=True)
    keep = ((arrays.manifest["preprocess_decision"] != REJECT)
            & (arrays.manifest["dataset"] == dataset)).to_numpy()
    manifest = arrays.manifest[keep].reset_index(drop=True)
    if required and len(manifest) == 0:
        raise TumorScreenError(f"split '{split}' has no usable {dataset} images")
    return np.asarray(arrays.images[keep]), manifest


def labelled_split(root: str | Path, split: str, required: bool = True) -> LabelledImages:
    """The usable (not rejected) internal-dataset images of one split, loaded into memory."""
    images, manifest = _usable(root, split, INTERNAL, required)
    return LabelledImages(images, class_index(manifest["label"]), manifest)


def site_split(root: str | Path, split: str) -> LabelledImages:
    """The usable external-site images of one split; labels are 1 tumour, 0 healthy."""
    images, manifest = _usable(root, split, EXTERNAL, required=True)
    return LabelledImages(images, manifest["tumor"].to_numpy(np.int64), manifest)


def concatenate(parts: list[LabelledImages]) -> LabelledImages:
    """Rows of several sets, one after another."""
    return LabelledImages(np.concatenate([part.images for part in parts]),
                          np.concatenate([part.labels for part in parts]),
                          pd.concat([part.manifest for part in parts], ignore_index=True))
