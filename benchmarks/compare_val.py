"""Paired val comparison of two kept checkpoints: the rule a setting must pass to be adopted.

Usage: python -m benchmarks.compare_val --workdir DIR --baseline A [A2 ...]
                                        --candidate B [B2 ...] [--resamples 1000]
                                        [--baseline-tta MODE] [--candidate-tta MODE]
                                        [--candidate-workdir DIR2] [--candidate-soup]
                                        [--paired-seeds [--candidate-members M]]
                                        [--result FILE]
DIR is a ``benchmarks.train`` workspace whose last arm wrote the val split both checkpoints
were trained against; A and B are checkpoint folders kept by ``benchmarks.train --keep``.
Each is scored as the calibrate and evaluate stages score it (the workspace's test-time
views, its own T fitted on val). A side given several checkpoints is scored as their
ensemble: the mean of their view-averaged logits, with one T; with ``--candidate-soup`` the
candidate's checkpoints are instead averaged weight by weight into one network
(``weight_soup``, BatchNorm statistics recomputed over the workspace's training images) and
scored as one. With ``--paired-seeds`` the two sides' checkpoints are paired in order
instead (one pair per training seed, each network scored alone) and the difference is the
mean of the pairs' differences, every pair on the same resampled images; its interval is
given twice, with the seeds fixed (``nll_difference``) and with the pairs resampled as well
(``nll_difference_resampling_seeds``, which carries the seed-to-seed spread); with
``--candidate-members M`` each seed's candidate is the ensemble of M consecutive candidate
checkpoints (a trial of several networks in the budget of one). ``--baseline-tta``
and ``--candidate-tta`` score a side under other test-time views. ``--candidate-workdir``
scores the candidate on another workspace's preprocessed val images (a trial of
preprocessing steps); its val split must hold the same images in the same order. The
candidate's val NLL minus the baseline's is bootstrapped by near-duplicate group, paired
(both on the same resampled images) and with each T refitted in every resample. Checkpoints
whose run records name different devices (CPU models or GPUs, which round differently) are
refused. The README's rule adopts a change only when, over at least four paired seeds, the
interval with the seeds resampled lies wholly below zero.
Reads no test images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tumorscreen.metrics.calibration import calibrated_nll_differences, fit_temperature, image_nll
from tumorscreen.metrics.report import tumor_auroc
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.models.score import CLASSES
from tumorscreen.models.tta import mode_logits
from tumorscreen.records import read_json, write_json
from tumorscreen.train.data import labelled_split
from tumorscreen.train.device import resolve_device, resolve_precision
from tumorscreen.train.loop import TrainConfig, weight_soup

# How many of the worst-scored val images the summary weighs against the whole NLL.
WORST_IMAGES = 10


def predictor_summary(logits: np.ndarray, labels: np.ndarray,
                      paths: np.ndarray) -> dict[str, Any]:
    """The evaluated predictor's val figures: T, NLL after T, the ``WORST_IMAGES`` worst
    images (path, label, call, NLL) and their share of that NLL, accuracy, tumour AUROC.
    ``paths`` names the (N,) images in the order of the (N, K) ``logits``."""
    temperature = fit_temperature(logits, labels)
    losses = image_nll(logits, labels, temperature)
    worst = np.argsort(-losses, kind="stable")[:WORST_IMAGES]
    return {"temperature": round(temperature, 4),
            "nll_after_t": round(float(losses.mean()), 4),
            "worst_images_nll_share": round(float(losses[worst].sum() / losses.sum()), 4),
            "worst_images": [{"path": str(paths[i]), "label": CLASSES[labels[i]],
                              "call": CLASSES[logits[i].argmax()],
                              "nll": round(float(losses[i]), 3)} for i in worst],
            "accuracy": round(float((logits.argmax(1) == labels).mean()), 4),
            "tumor_auroc": round(tumor_auroc(logits, labels, temperature), 4)}


def trained_on(folders: list[Path]) -> list[str]:
    """The devices (GPU or CPU model) the checkpoints in ``folders`` were trained on, as
    their run records name them; records from before CPU models were named say only "cpu"
    and are left out."""
    names = set()
    for folder in folders:
        record = folder / "run_info.json"
        name = read_json(record).get("name") if record.is_file() else None
        if name and name != "cpu":
            names.add(name)
    return sorted(names)


def compare_val(workdir: Path, baseline: list[Path], candidate: list[Path], resamples: int,
                baseline_tta: str | None = None, candidate_tta: str | None = None,
                candidate_workdir: Path | None = None,
                candidate_soup: bool = False, paired_seeds: bool = False,
                candidate_members: int = 1) -> dict[str, Any]:
    if candidate_members < 1 or (candidate_members > 1 and not paired_seeds):
        raise SystemExit("--candidate-members groups the candidate's checkpoints seed by "
                         "seed: it takes a count of at least 1, and --paired-seeds")
    if paired_seeds and (candidate_soup or len(candidate) != candidate_members * len(baseline)):
        raise SystemExit("--paired-seeds pairs the i-th baseline with the i-th candidate (the "
                         "i-th group of --candidate-members checkpoints): give the candidate "
                         "that many checkpoints for each baseline one (one by default), and "
                         "no soup")
    devices = trained_on([*baseline, *candidate])
    if len(devices) > 1:
        raise SystemExit(f"the checkpoints were trained on {' and '.join(devices)}, which "
                         "round differently, so the difference would mix the change with "
                         "the device: train both sides on one device")
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    val = labelled_split(workdir / "data" / "preprocessed", "val")
    paths = val.manifest["path"].to_numpy()
    inputs = {"baseline": val.images, "candidate": val.images}
    if candidate_workdir is not None:
        other = labelled_split(candidate_workdir / "data" / "preprocessed", "val")
        if not np.array_equal(other.manifest["path"].to_numpy(), paths):
            raise SystemExit(f"{candidate_workdir}: its val split holds other images than "
                             f"{workdir}'s, so the two cannot be paired")
        inputs["candidate"] = other.images
    device = resolve_device(params["train"]["device"])
    tta, evaluate = params["tta"], params["evaluate"]
    folders = {"baseline": baseline, "candidate": candidate}
    modes = {"baseline": baseline_tta or tta["internal"],
             "candidate": candidate_tta or tta["internal"]}
    networks = {name: [load_checkpoint(folder) for folder in side]
                for name, side in folders.items()}
    if candidate_soup:
        cfg = TrainConfig.from_params(params["train"])
        train = labelled_split(workdir / "data" / "preprocessed", "train")
        models = [model for model, _ in networks["candidate"]]
        soup = weight_soup(models, (train.images, train.labels), cfg, device,
                           resolve_precision(params["train"]["precision"], device))
        networks["candidate"] = [(soup, networks["candidate"][0][1])]
    per_network = {name: np.stack([mode_logits(model, config, inputs[name], device,
                                               modes[name], tta["rotation_deg"])
                                   for model, config in side])
                   for name, side in networks.items()}
    # one mechanism for both modes: each seed's members averaged into one predictor, (S, N, K)
    # for the pairs; unpaired, a side is one seed whose members are all its networks
    members = ({"baseline": 1, "candidate": candidate_members} if paired_seeds
               else {name: len(side) for name, side in per_network.items()})
    logits = {name: stacked.reshape(-1, members[name], *stacked.shape[1:]).mean(axis=1)
              for name, stacked in per_network.items()}
    if not paired_seeds:
        logits = {name: seeds[0] for name, seeds in logits.items()}
    groups = val.resampling_units(evaluate["bootstrap_unit"])

    differences = calibrated_nll_differences(logits["baseline"], logits["candidate"],
                                             val.labels, resamples, evaluate["confidence"],
                                             evaluate["seed"], groups)
    difference, across_seeds, *pair_differences = [
        {key: round(value, 4) for key, value in interval.items()}
        for interval in (differences["mean"], differences["mean_resampling_seeds"],
                         *differences["pairs"])]

    def summary_of(name: str, values: np.ndarray, checkpoints: list[Path]) -> dict[str, Any]:
        return {"checkpoints": [str(folder) for folder in checkpoints], "tta": modes[name],
                **predictor_summary(values, val.labels, paths)}

    if paired_seeds:
        def folders_of(name: str, i: int) -> list[Path]:
            return folders[name][i * members[name]:(i + 1) * members[name]]

        summaries = {"pairs": [
            {**{name: summary_of(name, logits[name][i], folders_of(name, i)) for name in logits},
             "nll_difference": pair_differences[i]}
            for i in range(len(baseline))],
            "nll_difference_resampling_seeds": across_seeds,
            "interval_below_zero_resampling_seeds": across_seeds["high"] < 0}
    else:
        summaries = {name: summary_of(name, logits[name], folders[name]) for name in logits}
    return {"val_images": len(val),
            "resampling_unit": evaluate["bootstrap_unit"], "resamples": resamples,
            "confidence": evaluate["confidence"],
            "candidate_workdir": str(candidate_workdir or workdir),
            "candidate_soup": candidate_soup, "paired_seeds": paired_seeds,
            "candidate_members": candidate_members,
            "trained_on": devices, **summaries, "nll_difference": difference,
            "interval_below_zero": difference["high"] < 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, nargs="+", required=True)
    parser.add_argument("--candidate", type=Path, nargs="+", required=True)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline-tta", default=None, metavar="MODE")
    parser.add_argument("--candidate-tta", default=None, metavar="MODE")
    parser.add_argument("--candidate-workdir", type=Path, default=None, metavar="DIR2")
    parser.add_argument("--candidate-soup", action="store_true")
    parser.add_argument("--paired-seeds", action="store_true")
    parser.add_argument("--candidate-members", type=int, default=1, metavar="M")
    parser.add_argument("--result", type=Path, default=None)
    args = parser.parse_args()
    result = compare_val(args.workdir, args.baseline, args.candidate, args.resamples,
                         args.baseline_tta, args.candidate_tta, args.candidate_workdir,
                         args.candidate_soup, args.paired_seeds, args.candidate_members)
    if args.result:
        write_json(args.result, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
