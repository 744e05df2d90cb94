"""split: holdout-safe splits over near-duplicate groups, with measured leakage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages._run import run_stage
from tumorscreen.data.manifest import count_by, read_manifest
from tumorscreen.data.split import (
    EXCLUDED,
    cross_split_leaks,
    make_splits,
    own_split_leakage,
    pair_categories,
)
from tumorscreen.errors import TumorScreenError
from tumorscreen.records import provenance, sha256_file, write_json

QC_MANIFEST = Path("data/qc/manifest.csv")
DEDUP_DIR = Path("data/dedup")
OUT_DIR = Path("data/split")
METRICS = Path("metrics/split.json")


def split(params: dict) -> None:
    manifest = read_manifest(QC_MANIFEST)
    groups = pd.read_csv(DEDUP_DIR / "groups.csv")
    pairs = pd.read_csv(DEDUP_DIR / "pairs.csv")
    rows = manifest.merge(groups, on="id", how="left").fillna({"group": ""})
    splits = make_splits(rows, params["split"])
    leaks = cross_split_leaks(splits, pairs)
    if any(leaks.values()):
        raise TumorScreenError(f"split leaks across splits: {leaks}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    columns = ["id", "dataset", "split_folder", "label", "tumor", "path", "sha256", "group",
               "qc_decision", "split", "split_reason"]
    splits[columns].to_csv(OUT_DIR / "splits.csv", index=False)
    kept, excluded = splits[splits["split"] != EXCLUDED], splits[splits["split"] == EXCLUDED]
    group_sizes = rows.loc[rows["group"] != "", "group"].value_counts()
    write_json(METRICS, {
        "groups": {"count": len(group_sizes), "multi_member": int((group_sizes > 1).sum()),
                   "largest": int(group_sizes.max()) if len(group_sizes) else 0},
        "near_duplicate_pairs": {**pair_categories(rows, pairs),
                                 "candidates": int((DEDUP_DIR / "candidates.txt").read_text())},
        "own_folders_leakage": own_split_leakage(rows, pairs),
        "removed": count_by(excluded, "split_reason"),
        "label_conflict_groups": int(excluded.loc[excluded["split_reason"] == "label_conflict",
                                                  "group"].nunique()),
        "adapt_twins_in_train": int((splits["split_reason"] == "internal_twin_of_adapt").sum()),
        "splits": count_by(kept, "split", "label"),
        "leakage": leaks,
        "leakage_count": sum(leaks.values()),
        "provenance": provenance(qc_manifest_sha256=sha256_file(QC_MANIFEST),
                                 pairs_sha256=sha256_file(DEDUP_DIR / "pairs.csv"),
                                 split_sha256=sha256_file(OUT_DIR / "splits.csv")),
    })


if __name__ == "__main__":
    run_stage("split", split)
