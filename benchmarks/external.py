"""Real-data benchmark of external validation, run as users run it: a git+DVC repo with the
real_cpu profile, ``dvc repro`` of the whole DAG, then the policy experiment.

Usage: python -m benchmarks.external [--workdir DIR]
(an existing DIR from an earlier run is reused: ``dvc repro`` then runs only the stages
whose code or params changed, and the result says so)
1. ``dvc repro``: download -> ... -> train -> calibrate -> finetune -> threshold ->
   evaluate_external, wall clock;
2. ``dvc exp run -S threshold.policy=min_fn_at_fp``: which stages reran, wall clock.
Every choice (epoch, temperature, threshold, band) is made on adapt and tune; the holdout is
read once, by evaluate_external. Writes benchmarks/results/external.json (small figures only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.profiles import REAL_CPU
from benchmarks.workspace import PROJECT, SHARED_DATA, make_dvc_repo, run_timed
from tumorscreen.records import machine_record, package_versions, read_json, write_json

RESULT = PROJECT / "benchmarks" / "results" / "external.json"
POLICY_EXPERIMENT = "threshold.policy=min_fn_at_fp"


def _figure(rate: dict) -> dict[str, Any]:
    return {key: round(rate[key], 4) if isinstance(rate[key], float) else rate[key]
            for key in ("value", "low", "high")}


def row_summary(row: dict) -> dict[str, Any]:
    """The figures of one holdout matrix row."""
    accepted = row["review"]["accepted"]
    return {"temperature": round(row["temperature"], 4), "threshold": round(row["threshold"], 4),
            "auroc": _figure(row["auroc"]), "counts": row["counts"],
            **{rate: _figure(row[rate]) for rate in ("sensitivity", "specificity", "ppv", "npv")},
            "review": {"band": [round(edge, 4) for edge in row["review"]["band"]],
                       "coverage": round(row["review"]["coverage"], 4),
                       "deferred": row["review"]["deferred"],
                       "accepted_sensitivity": _figure(accepted["sensitivity"]),
                       "accepted_specificity": _figure(accepted["specificity"])}}


def external_summary(root: Path) -> dict[str, Any]:
    external = read_json(root / "metrics/external.json")
    return {"policy": external["policy"], "inputs": external["inputs"],
            "holdout_images": external["holdout_images"],
            "holdout_tumour": external["holdout_tumour"],
            "rows": {row["key"]: row_summary(row) for row in external["rows"]}}


def stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    overrides = {**REAL_CPU,
                 "download.internal.local": str(SHARED_DATA / "brain-tumor-mri-224.zip"),
                 "download.external.local": str(SHARED_DATA / "navoneel-brain-mri.zip")}
    dvc = (sys.executable, "-m", "dvc")
    with tempfile.TemporaryDirectory(prefix="tumorscreen-external-") as tmp:
        reused = args.workdir is not None and (args.workdir / ".dvc").is_dir()
        root = make_dvc_repo(args.workdir or Path(tmp), overrides)
        repro_seconds, output = run_timed(root, *dvc, "repro")
        finetune = read_json(root / "metrics/finetune.json")
        results: dict[str, Any] = {
            "machine": machine_record(),
            "versions": package_versions(), "profile": "real_cpu",
            "repro_minutes": round(repro_seconds / 60, 2), "reused_workspace": reused,
            "repro_stages_run": stages_run(output),
            "finetune": {key: finetune[key] for key in
                         ("best_epoch", "epochs_run", "kept_base", "adapt_images",
                          "tune_images", "temperature", "tune")},
            "holdout": external_summary(root)}
        experiment_seconds, output = run_timed(root, *dvc, "exp", "run", "-S", POLICY_EXPERIMENT)
        results["policy_experiment"] = {"command": f"dvc exp run -S {POLICY_EXPERIMENT}",
                                        "stages_run": stages_run(output),
                                        "seconds": round(experiment_seconds, 1),
                                        "holdout": external_summary(root)}
    write_json(RESULT, results)
    print(json.dumps({key: {"auroc": r["auroc"]["value"], "sens": r["sensitivity"]["value"],
                            "spec": r["specificity"]["value"]}
                      for key, r in results["holdout"]["rows"].items()}, indent=1))


if __name__ == "__main__":
    main()
