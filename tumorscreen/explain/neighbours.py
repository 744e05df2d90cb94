"""Which reference images a query image resembles: nearest neighbours by cosine similarity.

numpy in and out: features in, indices and counts out.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import normalize


def nearest_neighbours(query: np.ndarray, reference: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, F) query and (R, F) reference features -> (Q, k) indices into ``reference`` and
    their (Q, k) cosine similarities, most similar first (ties in reference order)."""
    if not 0 < k <= len(reference):
        raise ValueError(f"k must be in [1, {len(reference)}], got {k}")
    similarity = normalize(query) @ normalize(reference).T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(similarity, order, axis=1)


def neighbour_label_counts(neighbours: np.ndarray, labels: np.ndarray,
                           num_classes: int) -> np.ndarray:
    """(Q, k) indices into the (R,) int ``labels`` -> (Q, num_classes) int counts of each
    class among a query's neighbours."""
    return (labels[neighbours][..., None] == np.arange(num_classes)).sum(axis=1)
