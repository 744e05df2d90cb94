"""The raw manifest: one row per file found in a dataset, copied into a normalised layout."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from tumorscreen.data.layout import is_tumor, labels_from_path
from tumorscreen.imaging.decode import read_header
from tumorscreen.records import sha256_file

MANIFEST_COLUMNS = (
    "id", "dataset", "split_folder", "label", "tumor", "original_path", "path", "sha256",
    "bytes", "format", "width", "height", "mode", "header_error",
)


def list_files(root: Path) -> list[str]:
    """Every file below ``root`` as a sorted POSIX path relative to it; links are not followed."""
    found = []
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            found.append((Path(folder) / name).relative_to(root).as_posix())
    return sorted(found)


def image_id(dataset: str, original_path: str) -> str:
    """Stable id from the dataset and the file's path in it (names repeat across folders)."""
    return f"{dataset}-{hashlib.sha256(original_path.encode()).hexdigest()[:12]}"


def ingest_dataset(dataset: str, root: Path, raw_dir: Path) -> list[dict[str, Any]]:
    """Copy every file of one dataset into ``raw_dir/files`` and describe it in a row.

    Nothing is skipped: links, empty and non-image files get a row with ``header_error``.
    """
    rows = []
    for original in list_files(root):
        source = root / original
        labels = labels_from_path(dataset, original)
        row_id = image_id(dataset, original)
        parts = ["files", dataset, labels.split_folder, labels.label, row_id + source.suffix]
        relative = PurePosixPath(*[p for p in parts if p])
        row: dict[str, Any] = {
            "id": row_id, "dataset": dataset, "split_folder": labels.split_folder,
            "label": labels.label, "tumor": is_tumor(labels.label), "original_path": original,
            "path": relative.as_posix(), "sha256": "", "bytes": 0, "format": "", "width": 0,
            "height": 0, "mode": "", "header_error": "",
        }
        if source.is_symlink():
            row["header_error"] = "symbolic link: not followed"
            rows.append(row)
            continue
        target = raw_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        header = read_header(target)
        row.update(sha256=sha256_file(target), bytes=target.stat().st_size, format=header.format,
                   width=header.width, height=header.height, mode=header.mode,
                   header_error=header.error)
        rows.append(row)
    return rows


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A manifest CSV with empty strings kept as strings (not NaN)."""
    return pd.read_csv(path, keep_default_na=False, dtype={"split_folder": str, "label": str})


def count_by(frame: pd.DataFrame, *columns: str) -> dict[str, Any]:
    """Nested counts, e.g. count_by(df, 'dataset', 'label') -> {internal: {glioma: 3, ...}}."""
    if len(columns) == 1:
        return {str(k): int(v) for k, v in frame[columns[0]].value_counts().sort_index().items()}
    return {str(key): count_by(group, *columns[1:])
            for key, group in frame.groupby(columns[0], sort=True)}
