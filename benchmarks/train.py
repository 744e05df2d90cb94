"""Real-data benchmark of train -> calibrate -> evaluate, with the preprocessing ablation.

Usage: python -m benchmarks.train [--workdir DIR] [--arms preprocessed raw]
                                  [--set KEY=VALUE ...] [--result FILE] [--keep DIR]
Runs the data stages on the two shared archives, then, for each arm at the same training
budget (the real_cpu profile), preprocess -> train -> calibrate -> evaluate as users run
them (whole processes, wall clock). The arms differ only in the preprocessing toggles.
Writes benchmarks/results/train.json (small figures only; no image data, no weights).
``--set`` tries other settings on top of the profile and of each arm's toggles (they are
recorded with each arm, so ``--set preprocess.crop.enabled=true`` tries one step alone);
``--result`` writes elsewhere, so such a trial leaves the published figures alone. Arms run
separately are merged, and the better one on val is named when all ran at one budget.
``--keep`` copies each arm's checkpoint to DIR/<arm>, for ``benchmarks.compare_val``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.profiles import PREPROCESSING_ARMS, REAL_CPU
from benchmarks.workspace import PROJECT, SHARED_DATA, make_workspace, run_stage_timed
from tumorscreen.records import machine_record, package_versions, read_json, write_json

DATA_STAGES = ("download", "qc", "dedup", "split")
MODEL_STAGES = ("preprocess", "train", "calibrate", "evaluate")
ARMS = PREPROCESSING_ARMS
RESULT = PROJECT / "benchmarks" / "results" / "train.json"


def rounded(figures: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {key: round(value, digits) if isinstance(value, float) else value
            for key, value in figures.items()}


def arm_summary(root: Path, seconds: dict[str, float]) -> dict[str, Any]:
    train = read_json(root / "metrics/train.json")
    run = read_json(root / "models/base/run_info.json")
    calibration = read_json(root / "metrics/calibration.json")
    evaluation = read_json(root / "metrics/evaluate.json")
    test, leaky = evaluation["test"], evaluation["leaky_testing_folder"]
    return {
        "val_at_best_epoch": rounded(train["val"]),
        "best_epoch": train["best_epoch"], "epochs_run": train["epochs_run"],
        "averaged_epochs": train.get("averaged_epochs", []),
        "average_val": train.get("average_val") and rounded(train["average_val"]),
        "init": train["init"],
        "test_images": test["images"],
        "test_bootstrap": {"unit": test["bootstrap_unit"],
                           "independent_units": test["independent_units"]},
        "test": {name: rounded(ci) for name, ci in test["headline"].items()},
        "test_recall": {name: round(row["recall"], 4)
                        for name, row in test["per_class"].items()},
        "test_ece": {"before": round(test["calibration_at_t1"]["ece"], 4),
                     "after": round(test["calibration"]["ece"], 4)},
        "temperature": round(calibration["temperature"], 4),
        "val_calibration": {"before": rounded(calibration["before"]),
                            "after": rounded(calibration["after"])},
        "val_tumor_auroc": round(calibration["tumor_auroc"], 4),
        "leaky_testing_folder": {"images": leaky["images"],
                                 **{name: round(leaky["headline"][name]["value"], 4)
                                    for name in ("accuracy", "macro_f1", "macro_auroc")}},
        "throughput": {key: round(run[key], 2) for key in
                       ("loop_images_per_s", "raw_images_per_s", "loop_vs_raw")},
        "seconds": {key: round(value, 1) for key, value in seconds.items()},
        "train_calibrate_evaluate_minutes": round(
            sum(seconds[s] for s in ("train", "calibrate", "evaluate")) / 60, 2),
    }


def train_settings(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The model, training budget and test-time views among ``params``, and every
    ``--set`` override, stored with each arm so runs at other settings show."""
    return {**{key: value for key, value in params.items()
               if key.startswith(("model.", "train.", "tta."))}, **overrides}


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML, as ``dvc exp run -S`` does."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def better_on_val(arms: dict[str, Any]) -> str | None:
    """The arm with the lower val NLL of the predictor that is evaluated (test-time views
    averaged, after T), when every arm ran at the same settings."""
    settings = [arm.get("settings") for arm in arms.values()]
    if len(arms) < len(ARMS) or any(s != settings[0] for s in settings):
        return None
    return min(arms, key=lambda a: arms[a]["val_calibration"]["after"]["nll"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    parser.add_argument("--set", dest="overrides", nargs="+", type=parse_override,
                        default=[], metavar="KEY=VALUE")
    parser.add_argument("--result", type=Path, default=RESULT)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    overrides = dict(args.overrides)
    base = {**REAL_CPU, **overrides,
            "download.internal.local": str(SHARED_DATA / "brain-tumor-mri-224.zip"),
            "download.external.local": str(SHARED_DATA / "navoneel-brain-mri.zip")}
    results: dict[str, Any] = {
        "machine": machine_record(),
        "versions": package_versions(), "profile": "real_cpu", "arms": {}}
    earlier = read_json(args.result) if args.result.is_file() else {"arms": {}}
    with tempfile.TemporaryDirectory(prefix="tumorscreen-train-") as tmp:
        root = make_workspace(args.workdir or Path(tmp), base)
        results["data_seconds"] = {s: round(run_stage_timed(root, s), 1) for s in DATA_STAGES}
        for arm in args.arms:
            make_workspace(root, {**base, **ARMS[arm], **overrides})
            seconds = {stage: run_stage_timed(root, stage) for stage in MODEL_STAGES}
            results["arms"][arm] = {**arm_summary(root, seconds),
                                    "settings": train_settings(base, overrides)}
            write_json(args.result, results)  # partial results survive an interrupted run
            if args.keep:
                shutil.copytree(root / "models" / "base", args.keep / arm, dirs_exist_ok=True)
    results["arms"] = {**earlier["arms"], **results["arms"]}  # keep the arms not rerun
    results["better_on_val"] = better_on_val(results["arms"])
    if results["better_on_val"] is None:
        results["better_on_val"] = earlier.get("better_on_val")
        results["better_on_val_note"] = "from the last run of both arms at one budget"
    write_json(args.result, results)
    print(json.dumps({arm: {"test": {k: v["value"] for k, v in r["test"].items()},
                            "minutes": r["train_calibrate_evaluate_minutes"]}
                      for arm, r in results["arms"].items()}, indent=1))


if __name__ == "__main__":
    main()
