"""download: fetch both datasets and write the normalised raw layout and its manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from stages._run import run_stage
from tumorscreen.data.extract import ExtractLimits
from tumorscreen.data.layout import DATASETS
from tumorscreen.data.manifest import count_by, ingest_dataset, to_frame
from tumorscreen.data.sources import fetch_dataset
from tumorscreen.data.synthetic import GROUND_TRUTH_FILE, generate_synthetic
from tumorscreen.records import provenance, sha256_file, write_json

RAW_DIR = Path("data/raw")
METRICS = Path("metrics/download.json")


def download(params: dict) -> None:
    cfg = params["download"]
    shutil.rmtree(RAW_DIR, ignore_errors=True)
    staging = RAW_DIR / ".staging"
    staging.mkdir(parents=True)
    limits = ExtractLimits(**cfg["extract"])
    sources = {}
    if cfg["source"] == "synthetic":
        generate_synthetic(staging, params["synthetic"])
        shutil.move(staging / GROUND_TRUTH_FILE, RAW_DIR / GROUND_TRUTH_FILE)
        roots = {dataset: staging / dataset for dataset in DATASETS}
        sources = {d: {"location": "synthetic", "seed": params["synthetic"]["seed"]}
                   for d in DATASETS}
    else:
        roots = {}
        for dataset in DATASETS:
            roots[dataset], sources[dataset] = fetch_dataset(
                cfg["source"], cfg[dataset], staging / dataset, limits)
    rows = [row for dataset in DATASETS for row in ingest_dataset(dataset, roots[dataset], RAW_DIR)]
    shutil.rmtree(staging)
    manifest = to_frame(rows)
    manifest.to_csv(RAW_DIR / "manifest.csv", index=False)
    write_json(RAW_DIR / "sources.json", sources)
    write_json(METRICS, {
        "files": len(manifest),
        "by_dataset_label": count_by(manifest, "dataset", "label"),
        "header_errors": int((manifest["header_error"] != "").sum()),
        "sources": sources,
        "provenance": provenance(source=cfg["source"],
                                 manifest_sha256=sha256_file(RAW_DIR / "manifest.csv")),
    })


if __name__ == "__main__":
    run_stage("download", download)
