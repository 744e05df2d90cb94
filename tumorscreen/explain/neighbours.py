"""Which reference images a query image resembles: nearest neighbours by cosine similarity.

Pure numpy: features in, indices and counts out.
"""

from __future__ import annotations

import numpy as np


def nearest_neighbours(query: np.ndarray, reference: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, F) query and (R, F) reference features -> (Q, k) indices into ``reference`` and
    their (Q, k) cosine similarities, most similar first (ties in reference order)."""
    if not 0 < k <= len(reference):
        raise ValueError(f"k must be in [1, {len(reference)}], got {k}")
    unit_query = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    unit_reference = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True),
                                            1e-12)
    similarity = unit_query @ unit_reference.T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(similarity, order, axis=1)


def neighbour_label_counts(neighbours: np.ndarray, labels: np.ndarray,
                           num_classes: int) -> np.ndarray:
    """(Q, k) indices into the (R,) int ``labels`` -> (Q, num_classes) int counts of each
    class among a query's neighbours."""
    counts = np.zeros((len(neighbours), num_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(neighbours)), neighbours.shape[1]),
                       labels[neighbours].ravel()), 1)
    return counts
