"""dedup: group near-duplicate images across all datasets (QC rejects are not grouped)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from stages._run import run_stage
from tumorscreen.data.dedup import fingerprint, group_labels, group_names, near_duplicate_pairs
from tumorscreen.data.manifest import read_manifest
from tumorscreen.imaging.decode import decode_image
from tumorscreen.parallel import parallel_map

RAW_DIR = Path("data/raw")
OUT_DIR = Path("data/dedup")


def _fingerprint(path: str, cfg: dict, max_pixels: int):
    gray = decode_image(RAW_DIR / path, max_pixels).gray
    return fingerprint(gray, cfg)


def dedup(params: dict) -> None:
    cfg = params["dedup"]
    manifest = read_manifest(Path("data/qc/manifest.csv"))
    usable = manifest[manifest["qc_decision"] != "reject"].reset_index(drop=True)
    prints = parallel_map(
        partial(_fingerprint, cfg=cfg, max_pixels=params["qc"]["limits"]["max_pixels"]),
        usable["path"].tolist(), cfg["workers"], desc="dedup")
    pairs, candidates = near_duplicate_pairs(prints, cfg["max_hamming"], cfg["min_correlation"])
    ids = usable["id"].tolist()
    groups = group_names(ids, group_labels(len(ids), pairs))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids, "group": groups}).to_csv(OUT_DIR / "groups.csv", index=False)
    named = pairs.assign(a=[ids[i] for i in pairs["a"]], b=[ids[i] for i in pairs["b"]])
    named.to_csv(OUT_DIR / "pairs.csv", index=False)
    (OUT_DIR / "candidates.txt").write_text(f"{candidates}\n")


if __name__ == "__main__":
    run_stage("dedup", dedup)
