"""The one tumour score: ``tumor_score(logits, T) = 1 - softmax(logits / T)[no_tumor]``.

Every stage and the CLI use it, so a decision made on the score means the same everywhere.
It is computed as ``sigmoid(tumor_logit)`` so scores near 0 and 1 stay accurate.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from scipy.special import expit, logsumexp

from tumorscreen.data.layout import INTERNAL_CLASSES

CLASSES = INTERNAL_CLASSES
NO_TUMOR = CLASSES.index("notumor")

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def tumor_logit(logits: Array, temperature: float = 1.0) -> Array:
    """``logsumexp(tumour logits / T) - no_tumor logit / T``, shape (N, K) -> (N,).

    The log-odds of the tumour score; its sigmoid is ``tumor_score``. Differentiable for
    torch tensors, so a loss on the tumour decision can use it directly.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    tumour = [k for k in range(logits.shape[-1]) if k != NO_TUMOR]
    if isinstance(logits, torch.Tensor):
        scaled = logits.float() / temperature
        return torch.logsumexp(scaled[..., tumour], dim=-1) - scaled[..., NO_TUMOR]
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return logsumexp(scaled[..., tumour], axis=-1) - scaled[..., NO_TUMOR]


def tumor_score(logits: Array, temperature: float = 1.0) -> Array:
    """Probability of any tumour class, shape (N, K) logits -> (N,) scores in [0, 1]."""
    logit = tumor_logit(logits, temperature)
    if isinstance(logit, torch.Tensor):
        return torch.sigmoid(logit)
    return expit(logit)


def class_index(labels: np.ndarray | list[str]) -> np.ndarray:
    """Class names -> int64 indices into CLASSES; an unknown name raises ValueError."""
    lookup = {name: index for index, name in enumerate(CLASSES)}
    unknown = sorted({label for label in labels if label not in lookup})
    if unknown:
        raise ValueError(f"labels outside {CLASSES}: {unknown}")
    return np.array([lookup[label] for label in labels], dtype=np.int64)
