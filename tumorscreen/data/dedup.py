"""Near-duplicate grouping: mirror-aware perceptual-hash candidates, then a pixel check.

pHash distance alone merges different patients' look-alike slices, so every candidate pair
is verified by the correlation of rank-normalised thumbnails (rank-based, so contrast and
gamma changes keep a true duplicate's correlation near 1), taken as-is and mirrored.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import rankdata

from tumorscreen.imaging.decode import to_uint8

PAIR_COLUMNS = ("a", "b", "hamming", "correlation", "mirrored")


@dataclass(frozen=True)
class Fingerprint:
    code: np.ndarray  # (hash_size**2 / 8,) uint8: packed pHash bits
    mirror_code: np.ndarray  # the same for the left-right mirrored image
    thumb: np.ndarray  # (thumb_size**2,) float32: rank-normalised thumbnail, zero mean, unit std


def rank_thumbnail(gray: np.ndarray, size: int, background_floor: float) -> np.ndarray:
    """(size, size) area-resampled thumbnail (aspect squashed), ranks standardised, float32.

    Pixels darker than ``background_floor`` x the thumbnail's Otsu level are zeroed first:
    background noise has random ranks and would decorrelate true duplicates, and an
    Otsu-relative floor moves with a contrast change where a fixed one would not.
    """
    small = cv2.resize(gray.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    small8 = to_uint8(small)
    level, _ = cv2.threshold(small8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    small[small8 < background_floor * level] = 0.0
    ranks = rankdata(small.ravel()).reshape(size, size)
    return ((ranks - ranks.mean()) / max(float(ranks.std()), 1e-6)).astype(np.float32)


def fingerprint(gray: np.ndarray, cfg: dict) -> Fingerprint:
    """Perceptual hashes of an image and of its mirror, plus its verification thumbnail.

    ``gray`` is (H, W) float in [0, 1]; ``cfg`` holds the ``dedup`` params hash_size,
    thumb_size and background_floor.
    """
    hash_size = cfg["hash_size"]
    image = Image.fromarray(to_uint8(gray))
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    code = np.packbits(imagehash.phash(image, hash_size).hash.ravel())
    mirror_code = np.packbits(imagehash.phash(mirror, hash_size).hash.ravel())
    thumb = rank_thumbnail(gray, cfg["thumb_size"], cfg["background_floor"])
    return Fingerprint(code, mirror_code, thumb.ravel())


def _mirror_thumbs(thumbs: np.ndarray) -> np.ndarray:
    n, length = thumbs.shape
    side = round(length**0.5)
    return thumbs.reshape(n, side, side)[:, :, ::-1].reshape(n, length)


def near_duplicate_pairs(
    prints: list[Fingerprint], max_hamming: int, min_correlation: float
) -> tuple[pd.DataFrame, int]:
    """Verified near-duplicate pairs among ``prints`` and the number of pHash candidates.

    Returns a frame with columns PAIR_COLUMNS (``a < b`` are indices into ``prints``;
    ``mirrored`` when the mirrored match was the better one) and the candidate count.
    """
    codes = np.stack([p.code for p in prints])
    mirror_codes = np.stack([p.mirror_code for p in prints])
    thumbs = np.stack([p.thumb for p in prints])
    mirror_thumbs = _mirror_thumbs(thumbs)
    length = thumbs.shape[1]
    found, candidates = [], 0
    for i in range(len(prints) - 1):
        direct = np.bitwise_count(codes[i] ^ codes[i + 1:]).sum(axis=1)
        flipped = np.bitwise_count(codes[i] ^ mirror_codes[i + 1:]).sum(axis=1)
        near = np.flatnonzero(np.minimum(direct, flipped) <= max_hamming)
        if near.size == 0:
            continue
        candidates += near.size
        others = near + i + 1
        corr_direct = thumbs[others] @ thumbs[i] / length
        corr_mirror = mirror_thumbs[others] @ thumbs[i] / length
        best = np.maximum(corr_direct, corr_mirror)
        for k in np.flatnonzero(best >= min_correlation):
            mirrored = bool(corr_mirror[k] > corr_direct[k])
            hamming = int(flipped[near[k]] if mirrored else direct[near[k]])
            found.append((i, int(others[k]), hamming, float(best[k]), mirrored))
    return pd.DataFrame(found, columns=list(PAIR_COLUMNS)), candidates


def group_labels(count: int, pairs: pd.DataFrame) -> np.ndarray:
    """Connected components of the pair graph: (count,) int group label per item."""
    graph = coo_matrix((np.ones(len(pairs)), (pairs["a"], pairs["b"])), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def group_names(ids: list[str], labels: np.ndarray) -> list[str]:
    """Stable group names: each group is named after its smallest member id."""
    first: dict[int, str] = {}
    for image_id, label in zip(ids, labels, strict=True):
        first[label] = min(first.get(label, image_id), image_id)
    return [f"g:{first[label]}" for label in labels]
