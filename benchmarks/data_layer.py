"""Real-data benchmark of download -> qc -> dedup -> split on the two shared archives.

Usage: python -m benchmarks.data_layer [--workdir DIR]
Writes benchmarks/results/data_layer.json (small figures only; no image data).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.workspace import PROJECT, make_workspace, real_data_overrides, run_stage_timed
from tumorscreen.records import machine_record, package_versions, write_json

STAGES = ("download", "qc", "dedup", "split")
RESULT = PROJECT / "benchmarks" / "results" / "data_layer.json"


def summarise(root: Path, seconds: dict[str, float]) -> dict:
    qc = pd.read_csv(root / "data/qc/manifest.csv", keep_default_na=False)
    qc_metrics = json.loads((root / "metrics/qc.json").read_text())
    split = json.loads((root / "metrics/split.json").read_text())
    return {
        "machine": machine_record(),
        "versions": package_versions(),
        "seconds": {**{k: round(v, 1) for k, v in seconds.items()},
                    "total": round(sum(seconds.values()), 1)},
        "images_in_qc_manifest": len(qc),
        "images_by_dataset": qc["dataset"].value_counts().to_dict(),
        "qc_decisions": qc_metrics["decisions"],
        "qc_reasons": qc_metrics["by_reason"],
        "groups": split["groups"],
        "near_duplicate_pairs": split["near_duplicate_pairs"],
        "own_folders_leakage": split["own_folders_leakage"],
        "removed": split["removed"],
        "splits": split["splits"],
        "leakage_count": split["leakage_count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tumorscreen-bench-") as tmp:
        root = make_workspace(args.workdir or Path(tmp), real_data_overrides())
        seconds = {stage: run_stage_timed(root, stage) for stage in STAGES}
        result = summarise(root, seconds)
    write_json(RESULT, result)
    print(json.dumps({k: result[k] for k in ("seconds", "images_in_qc_manifest",
                                              "leakage_count", "own_folders_leakage")}, indent=1))


if __name__ == "__main__":
    main()
