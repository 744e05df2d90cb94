"""The two dataset layouts the pipeline understands, and labels read from folder names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

INTERNAL = "internal"
EXTERNAL = "external"
DATASETS = (INTERNAL, EXTERNAL)

INTERNAL_CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
EXTERNAL_LABELS = ("no", "yes")
HEALTHY_LABELS = frozenset({"notumor", "no"})
INTERNAL_FOLDERS = ("Training", "Testing")

LABELS = {INTERNAL: INTERNAL_CLASSES, EXTERNAL: EXTERNAL_LABELS}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class PathLabels:
    split_folder: str  # the dataset's own Training/Testing folder, "" when it has none
    label: str  # a folder label from LABELS, or UNKNOWN


def labels_from_path(dataset: str, relative_path: str) -> PathLabels:
    """Split folder and label from a file's path inside its dataset (case-insensitive).

    The label is the last folder that names a known label, so extra nesting such as
    ``Testing/meningioma/.ipynb_checkpoints/x.jpg`` still resolves to ``meningioma``.
    """
    folders = [part.lower() for part in PurePosixPath(relative_path).parts[:-1]]
    known = {label.lower(): label for label in LABELS[dataset]}
    label = next((known[f] for f in reversed(folders) if f in known), UNKNOWN)
    split_names = {name.lower(): name for name in INTERNAL_FOLDERS}
    split_folder = next((split_names[f] for f in folders if f in split_names), "")
    return PathLabels(split_folder=split_folder, label=label)


def is_tumor(label: str) -> int:
    """1 for a tumour label of either dataset, 0 for a healthy one, -1 when unknown."""
    if label == UNKNOWN:
        return -1
    return int(label not in HEALTHY_LABELS)
