"""The profile across training seeds: how far its test figures move with the seed alone, and
which test images carry the tumour-vs-healthy pairs it orders the wrong way.

Usage: python -m benchmarks.seeds --workdir DIR --store STORE --seeds 0 1 2 ...
                                  [--result FILE]
STORE/seed-<n>/ holds one ``benchmarks.train --arms raw --set train.seed=<n>`` run: its
result (run.json) and kept checkpoint (raw/). A seed without one is trained first, in the
workspace DIR; a stored run at other settings than the profile's (the seed aside) is
refused. Each network is then scored on DIR's test images under the profile's test-time
views: its tumour-vs-healthy AUROC is recomputed (as evaluate gives it, and with each
near-duplicate group counted once), and ``misordered_pairs`` says which tumour and healthy
images the lost AUROC sits on at each seed. Writes benchmarks/results/seeds.json (figures
and image ids, no image data). Reads test, for the spread and the error analysis only: no
setting is chosen from it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score

from benchmarks.profiles import REAL_CPU
from benchmarks.train import train_settings
from benchmarks.workspace import PROJECT, run_whole
from tumorscreen.metrics.classification import binary_auroc, misordered_pairs
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.models.score import NO_TUMOR, tumor_logit
from tumorscreen.models.tta import mode_logits
from tumorscreen.params import get_dotted
from tumorscreen.records import machine_record, package_versions, read_json, write_json
from tumorscreen.train.data import LabelledImages, labelled_split
from tumorscreen.train.device import resolve_device

RESULT = PROJECT / "benchmarks" / "results" / "seeds.json"
# The acceptance criteria each seed is held to: B0's figures (see the README).
CRITERIA = {"accuracy": (">=", 0.95), "macro_auroc": (">=", 0.997),
            "tumor_auroc": (">=", 0.999), "test_ece_after_t": ("<=", 0.02)}
LISTED_GROUPS = 6


def is_stored(folder: Path) -> bool:
    """Whether ``folder`` holds a run's result and kept checkpoint."""
    return (folder / "run.json").is_file() and (folder / "raw" / "model.pt").is_file()


def train_seed(workdir: Path, folder: Path, seed: int) -> None:
    """One ``benchmarks.train`` run of the profile at ``seed`` in ``workdir``, kept in
    ``folder``."""
    run_whole([sys.executable, "-m", "benchmarks.train", "--workdir", str(workdir),
               "--arms", "raw", "--result", str(folder / "run.json"),
               "--keep", str(folder), "--set", f"train.seed={seed}"], PROJECT)


def refuse_other_settings(run: dict[str, Any], seed: int, default_seed: int) -> None:
    """SystemExit unless ``run`` trained the profile at ``seed``."""
    settings = dict(run["arms"]["raw"]["settings"])
    trained_seed = settings.pop("train.seed", default_seed)
    if trained_seed != seed:
        raise SystemExit(f"the run stored for seed {seed} trained seed {trained_seed}")
    if settings != train_settings(REAL_CPU, {}):
        raise SystemExit(f"the run stored for seed {seed} trained other settings than the "
                         f"profile's: {settings}")


def seed_figures(run: dict[str, Any]) -> dict[str, Any]:
    """One seed's row, from its ``benchmarks.train`` result."""
    arm = run["arms"]["raw"]
    test = arm["test"]
    return {"cpu_model": run["machine"].get("cpu_model"),
            "val_nll_after_t": arm["val_calibration"]["after"]["nll"],
            "kept_epoch": arm["best_epoch"], "accuracy": test["accuracy"],
            "macro_auroc": test["macro_auroc"], "tumor_auroc": test["tumor_auroc"],
            "test_ece_after_t": arm["test_ece"]["after"],
            "leaky_testing_folder_accuracy": arm["leaky_testing_folder"]["accuracy"],
            "train_calibrate_evaluate_minutes": arm["train_calibrate_evaluate_minutes"]}


def tumor_logits_on_test(folder: Path, test: LabelledImages, params: dict[str, Any]) -> np.ndarray:
    """(N,) tumour log-odds of the test images, scored as evaluate scores them."""
    model, config = load_checkpoint(folder / "raw")
    logits = mode_logits(model, config, test.images, resolve_device(params["train"]["device"]),
                         params["tta"]["internal"], params["tta"]["rotation_deg"])
    return tumor_logit(logits)


def one_per_group_weights(groups: np.ndarray) -> np.ndarray:
    """(N,) weights 1 / (images of the same near-duplicate group), so each group counts once."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def spread(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, SD, range and how many seeds meet each criterion."""
    out = {}
    for name, (sense, bound) in CRITERIA.items():
        values = [row[name]["value"] if isinstance(row[name], dict) else row[name]
                  for row in rows]
        met = [v >= bound if sense == ">=" else v <= bound for v in values]
        out[name] = {"mean": round(statistics.mean(values), 5),
                     "sd": round(statistics.stdev(values), 5) if len(values) > 1 else None,
                     "min": min(values), "max": max(values),
                     "criterion": f"{sense} {bound}", "seeds_meeting": sum(met)}
    return out


def images_behind_lost_pairs(test: LabelledImages, pairs: np.ndarray) -> dict[str, Any]:
    """``pairs`` (S, N): which images carry the misordered pairs, and how often they recur.
    Near-duplicate copies score alike, so images are listed by group, each side's
    ``LISTED_GROUPS`` groups with the most misordered pairs over all seeds."""
    seeds = len(pairs)
    recurring = (pairs > 0).sum(axis=0)
    total = pairs.sum() / 2  # each pair is counted on both of its images
    tumour = test.labels != NO_TUMOR

    def share(tumour_images: np.ndarray) -> float:  # a pair is counted once on its tumour
        return round(float(pairs[:, tumour_images].sum() / total), 4) if total else 0.0

    frame = test.manifest.assign(group=test.resampling_units("group"), tumour=tumour,
                                 recurring=recurring, total=pairs.sum(axis=0))
    listed: dict[str, list[dict[str, Any]]] = {"tumour": [], "healthy": []}
    for side, rows in (("tumour", frame[tumour]), ("healthy", frame[~tumour])):
        by_group = rows.groupby("group", sort=False)
        totals = by_group["total"].sum()
        for group in totals[totals > 0].sort_values(ascending=False,
                                                    kind="stable").index[:LISTED_GROUPS]:
            members = by_group.get_group(group)
            listed[side].append({
                "group": group, "label": members["label"].iloc[0], "images": len(members),
                "ids": members["id"].tolist(), "folders": sorted(set(members["split_folder"])),
                "seeds_misordered": int(members["recurring"].max()),
                "pairs_by_seed": pairs[:, members.index].sum(axis=1).tolist()})
    return {"misordered_pairs_by_seed": (pairs.sum(axis=1) / 2).tolist(),
            "images_misordered_at_any_seed": {"tumour": int(((recurring > 0) & tumour).sum()),
                                              "healthy": int(((recurring > 0) & ~tumour).sum())},
            "share_on_tumour_images_at_every_seed": share(tumour & (recurring == seeds)),
            "share_on_tumour_images_at_half_the_seeds_or_more":
                share(tumour & (recurring >= seeds / 2)),
            "groups": listed}


def seeds_benchmark(workdir: Path, store: Path, seeds: list[int]) -> dict[str, Any]:
    default_seed = yaml.safe_load((PROJECT / "params.yaml").read_text())["train"]["seed"]
    runs = {seed: store / f"seed-{seed}" for seed in seeds}
    missing = [seed for seed, folder in runs.items() if not is_stored(folder)]
    for seed in runs.keys() - missing:  # a wrong stored run is refused before any training
        refuse_other_settings(read_json(runs[seed] / "run.json"), seed, default_seed)
    for seed in missing:  # trained at the profile's settings, so not checked again
        train_seed(workdir, runs[seed], seed)
    params = yaml.safe_load((workdir / "params.yaml").read_text())  # laid out by training
    scoring = {key: value for key, value in REAL_CPU.items()
               if key.startswith(("preprocess.", "tta."))}
    if any(get_dotted(params, key) != value for key, value in scoring.items()):
        raise SystemExit(f"{workdir} is not at the profile's preprocessing and views: run "
                         "benchmarks.train there first")
    test = labelled_split(workdir / "data" / "preprocessed", "test")
    tumour = test.labels != NO_TUMOR
    weights = one_per_group_weights(test.resampling_units("group"))
    rows, pairs = [], []
    for seed, folder in runs.items():
        run = read_json(folder / "run.json")
        score = tumor_logits_on_test(folder, test, params)
        pairs.append(misordered_pairs(tumour, score))
        rows.append({"seed": seed, **seed_figures(run),
                     "tumor_auroc_rescored": round(binary_auroc(tumour, score), 4),
                     "tumor_auroc_one_per_group": round(float(roc_auc_score(
                         tumour, score, sample_weight=weights)), 4)})
    stacked = np.stack(pairs)
    return {"machine": machine_record(), "versions": package_versions(),
            "profile": "real_cpu", "settings": train_settings(REAL_CPU, {}),
            "test_images": {"tumour": int(tumour.sum()), "healthy": int((~tumour).sum())},
            "seeds": rows, "spread": spread(rows),
            "lost_tumour_healthy_pairs": images_behind_lost_pairs(test, stacked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--result", type=Path, default=RESULT)
    args = parser.parse_args()
    result = seeds_benchmark(args.workdir, args.store, args.seeds)
    write_json(args.result, result)
    print(yaml.safe_dump({"spread": result["spread"],
                          "lost": result["lost_tumour_healthy_pairs"]}, sort_keys=False))


if __name__ == "__main__":
    main()
