"""Real-data benchmark of the preprocess stage: every image, pool against one worker.

Usage: python -m benchmarks.preprocess [--workdir DIR] [--size 224]
Runs download -> qc -> dedup -> split on the two shared archives, then the preprocess stage
twice as users run it (whole process, wall clock): with the pool (all cores) and with one
worker. Writes benchmarks/results/preprocess.json (small figures only; no image data).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.workspace import PROJECT, make_workspace, real_data_overrides, run_stage_timed
from tumorscreen.data.split import ALL_SPLITS
from tumorscreen.data.store import load_split
from tumorscreen.parallel import resolve_workers
from tumorscreen.records import machine_record, package_versions, write_json

DATA_STAGES = ("download", "qc", "dedup", "split")
RESULT = PROJECT / "benchmarks" / "results" / "preprocess.json"


def quantiles(values: pd.Series) -> dict[str, float]:
    """5th, 50th and 95th percentiles, rounded."""
    found = np.nanpercentile(values.to_numpy(dtype=float), [5, 50, 95])
    return {f"p{q}": round(float(v), 3) for q, v in zip((5, 50, 95), found, strict=True)}


def summarise(root: Path, seconds: dict[str, float], pool_workers: int) -> dict:
    table = pd.concat([load_split(root / "data/preprocessed", s).manifest for s in ALL_SPLITS])
    metrics = json.loads((root / "metrics/preprocess.json").read_text())
    kept = table[table["preprocess_decision"] != "reject"]
    bias_ratio = np.exp(kept["n4_log_bias_max"].astype(float)
                        - kept["n4_log_bias_min"].astype(float))
    return {
        "machine": machine_record(),
        "versions": package_versions(),
        "images": len(table),
        "decisions": metrics["decisions"],
        "by_reason": metrics["by_reason"],
        "nyul_fitted_on": metrics["nyul_fitted_on"],
        "mask_fraction": quantiles(kept["mask_fraction"]),
        "n4_bias_max_over_min": quantiles(bias_ratio),
        "per_step_mean_ms": {k: v["mean_ms"] for k, v in
                             metrics["seconds"]["per_step"].items()},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "pool_workers": pool_workers,
        "pool_speedup": round(seconds["preprocess_1_worker"] / seconds["preprocess_pool"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--size", type=int, default=224, help="model input side, pixels")
    args = parser.parse_args()
    overrides = {**real_data_overrides(), "preprocess.size": args.size}
    with tempfile.TemporaryDirectory(prefix="tumorscreen-bench-") as tmp:
        root = make_workspace(args.workdir or Path(tmp), overrides)
        seconds = {stage: run_stage_timed(root, stage) for stage in DATA_STAGES}
        make_workspace(root, {**overrides, "preprocess.workers": 1})
        seconds["preprocess_1_worker"] = run_stage_timed(root, "preprocess")
        make_workspace(root, {**overrides, "preprocess.workers": 0})
        seconds["preprocess_pool"] = run_stage_timed(root, "preprocess")
        result = summarise(root, seconds, resolve_workers(0))
    result["size"] = args.size
    write_json(RESULT, result)
    print(json.dumps({k: result[k] for k in ("images", "decisions", "seconds", "pool_speedup")},
                     indent=1))


if __name__ == "__main__":
    main()
