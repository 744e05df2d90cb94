"""finetune, threshold and evaluate_external in the tiny end-to-end repo, and the holdout's
isolation from every stage that makes a choice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import log_loss, roc_auc_score

from benchmarks.profiles import STEPS
from tests.pipeline import (
    copy_project,
    dvc,
    run,
    scratch_copy,
    stage_error,
    stages_run,
    with_downstream,
)
from tumorscreen.metrics.calibration import fit_tumor_temperature
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.models.predict import checkpoint_logits
from tumorscreen.models.score import tumor_score
from tumorscreen.policy.matrix import Variant, matrix, model_views, variant_scores
from tumorscreen.policy.thresholds import fit_policy
from tumorscreen.train.data import site_split

CPU = torch.device("cpu")
SITE_MODELS = {"base": ("models/base", "models/calibration.json"),
               "finetuned": ("models/finetuned", "models/finetuned/calibration.json")}
# Runs one stage with an audit hook that records every file the process opens.
OPEN_RECORDER = """
import os, runpy, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(os.path.abspath(args[0]))
                 if event == "open" and isinstance(args[0], str) else None)
try:
    runpy.run_module("stages." + sys.argv[1], run_name="__main__")
finally:
    open(sys.argv[2], "w").write("\\n".join(opened))
"""


def read(repo: Path, name: str) -> dict:
    return json.loads((repo / name).read_text())


def models_of(repo: Path) -> dict:
    return {name: (repo / folder, repo / calibration)
            for name, (folder, calibration) in SITE_MODELS.items()}


def test_finetuned_checkpoint_and_tune_temperature(repo):
    model, config = load_checkpoint(repo / "models/finetuned")
    tune = site_split(repo / "data/preprocessed", "tune")
    logits = checkpoint_logits(model, config, tune.images, CPU)
    stored = read(repo, "models/finetuned/calibration.json")
    assert stored["fitted_on"] == "tune" and stored["images"] == len(tune)
    assert stored["temperature"] == pytest.approx(
        fit_tumor_temperature(logits, tune.labels.astype(bool)), rel=1e-6)
    metrics = read(repo, "metrics/finetune.json")
    assert metrics["tune"]["finetuned"]["loss"] <= metrics["tune"]["base"]["loss"]
    assert metrics["provenance"]["base_checkpoint_sha256"] == \
        read(repo, "metrics/train.json")["provenance"]["checkpoint_sha256"]


def test_thresholds_are_the_policy_fitted_on_tune_for_every_row(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    fitted = read(repo, "models/threshold.json")
    assert fitted["policy"] == params["threshold"]["policy"] and fitted["fitted_on"] == "tune"
    assert set(fitted["inputs"]) == {"min_specificity"}
    assert set(fitted["rows"]) == {variant.key for variant in matrix()}
    tune = site_split(repo / "data/preprocessed", "tune")
    views = model_views(models_of(repo), tune.images, CPU, params["tta"]["rotation_deg"])
    for key, row in fitted["rows"].items():
        variant = Variant(row["model"], row["tta"], row["calibrated"])
        scores = variant_scores(views[variant.model].logits, variant,
                                views[variant.model].temperature)
        expected = fit_policy(fitted["policy"], params["threshold"], scores,
                              tune.labels.astype(bool))
        assert row["threshold"] == pytest.approx(expected, rel=1e-6), key
        low, high = row["band"]
        assert low <= row["threshold"] <= high
        assert row["tune"]["specificity"]["value"] >= params["threshold"]["min_specificity"]


def test_external_matrix_rows_are_aligned_and_complete(repo):
    external = read(repo, "metrics/external.json")
    holdout = site_split(repo / "data/preprocessed", "holdout")
    assert external["holdout_images"] == len(holdout)
    rows = external["rows"]
    toggles = {model: {(r["tta"], r["calibrated"]) for r in rows if r["model"] == model}
               for model in ("base", "finetuned")}
    assert toggles["base"] == toggles["finetuned"] == {(a, b) for a in (0, 1) for b in (0, 1)}
    fitted = read(repo, "models/threshold.json")["rows"]
    for row in rows:
        assert row["threshold"] == fitted[row["key"]]["threshold"]
        assert row["temperature"] == (fitted[row["key"]]["temperature"])
        assert sum(row["counts"].values()) == len(holdout)
        review = row["review"]
        accepted = sum(review["accepted"]["counts"].values())
        assert accepted + review["deferred"]["total"] == len(holdout)
        assert review["coverage"] == pytest.approx(accepted / len(holdout))
        for rate in ("sensitivity", "specificity", "ppv", "npv"):
            figure = row[rate]
            if figure["value"] is not None:
                assert figure["low"] <= figure["value"] <= figure["high"], rate
    provenance = external["provenance"]
    assert set(provenance["tta"]) == set(provenance["threshold"]) == set(fitted)
    table = pd.read_csv(repo / "plots/external/comparison.csv")
    assert len(table) == 8 and (repo / "plots/external/comparison.html").is_file()
    for model in ("base", "finetuned"):
        assert (repo / f"plots/external/roc_{model}.csv").is_file()


def test_holdout_is_read_by_no_stage_that_makes_a_choice(repo, tmp_path):
    """finetune and threshold never open a holdout file, and the splits they do read share
    no image (by hash) and no near-duplicate group with the holdout."""
    work = scratch_copy(repo, tmp_path)
    holdout = pd.read_csv(work / "data/preprocessed/holdout/manifest.csv",
                          keep_default_na=False)
    holdout_groups, holdout_hashes = set(holdout["group"]), set(holdout["sha256"])
    for stage in ("finetune", "threshold"):
        record = tmp_path / f"{stage}.opened"
        run(work, sys.executable, "-c", OPEN_RECORDER, stage, str(record))
        opened = [Path(p) for p in record.read_text().splitlines()]
        inside = {p.resolve().relative_to(work.resolve()) for p in opened
                  if p.resolve().is_relative_to(work.resolve())}
        assert not [p for p in inside if "holdout" in p.parts], stage
        assert not [p for p in inside if p.parts[:2] == ("data", "raw")], stage
        splits = {p.parts[2] for p in inside if p.parts[:2] == ("data", "preprocessed")}
        assert splits, stage  # the recorder did see the stage's reads
        for split in splits:
            manifest = pd.read_csv(work / "data/preprocessed" / split / "manifest.csv",
                                   keep_default_na=False)
            assert not holdout_groups & set(manifest["group"]), (stage, split)
            assert not holdout_hashes & set(manifest["sha256"]), (stage, split)
    assert np.load(work / "data/preprocessed/holdout/images.npy").shape[0] == len(holdout)


def test_dvc_graph_keeps_the_holdout_out_of_finetune_and_threshold():
    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    for name in ("finetune", "threshold"):
        assert not [d for d in stages[name]["deps"] if "holdout" in d or d == "data/preprocessed"]
    assert "data/preprocessed/holdout" in stages["evaluate_external"]["deps"]


def test_policy_experiment_reruns_only_threshold_and_after(repo):
    result = dvc(repo, "exp", "run", "-S", "threshold.policy=min_fn_at_fp")
    assert stages_run(result.stdout) == with_downstream("threshold")
    assert with_downstream("threshold") >= {"threshold", "evaluate_external"}
    assert read(repo, "models/threshold.json")["policy"] == "min_fn_at_fp"
    assert read(repo, "metrics/external.json")["policy"] == "min_fn_at_fp"


def test_neyman_pearson_with_too_few_healthy_cases_stops_with_one_line(repo, tmp_path):
    work = scratch_copy(repo, tmp_path, **{"threshold.policy": "neyman_pearson",
                                           "threshold.alpha": 0.01, "threshold.delta": 0.01})
    assert "healthy cases in the fitting split" in stage_error(work, "threshold")


def test_fine_tuning_fits_the_shifted_synthetic_site_on_the_holdout(tmp_path):
    """With preprocessing off, the synthetic site's shift (contrast, bias, size, burnt-in
    text) reaches the model and moves its tumour scores. Adapting on adapt, with the epoch
    and T chosen on tune, lowers the holdout log loss of the calibrated score, without
    giving up ranking (on a site this small, AUROC moves by a few pairs either way)."""
    root = copy_project(tmp_path, **{f"preprocess.{step}.enabled": False for step in STEPS},
                        **{"synthetic.internal_per_class": {"Training": 40, "Testing": 10},
                           "synthetic.external_per_label": 60, "train.epochs": 60,
                           "train.patience": 15})
    for stage in ("download", "qc", "dedup", "split", "preprocess", "train", "calibrate",
                  "finetune", "threshold", "evaluate_external"):
        run(root, sys.executable, "-m", f"stages.{stage}")
    assert not read(root, "metrics/finetune.json")["kept_base"]
    holdout = site_split(root / "data/preprocessed", "holdout")
    fitted = {}
    for name, calibration in (("base", "models/calibration.json"),
                              ("finetuned", "models/finetuned/calibration.json")):
        model, config = load_checkpoint(root / "models" / name)
        logits = checkpoint_logits(model, config, holdout.images, torch.device("cpu"))
        score = tumor_score(logits, read(root, calibration)["temperature"])
        fitted[name] = (log_loss(holdout.labels, score, labels=[0, 1]),
                        roc_auc_score(holdout.labels, score))
    assert fitted["finetuned"][0] < 0.95 * fitted["base"][0], fitted
    assert fitted["finetuned"][1] > fitted["base"][1] - 0.05, fitted
    auroc = {row["key"]: row["auroc"]["value"] for row in read(root, "metrics/external.json")
             ["rows"]}
    assert auroc["finetuned|tta=off|calibration=on"] == pytest.approx(fitted["finetuned"][1])


def test_view_logits_cache_serves_only_the_same_weights_images_and_views(repo, tmp_path,
                                                                         monkeypatch):
    import tumorscreen.policy.matrix as matrix_module

    tune = site_split(repo / "data/preprocessed", "tune")
    cache = tmp_path / "views.npz"
    first = model_views(models_of(repo), tune.images, CPU, 5.0, cache)

    def recomputed(*args):
        raise AssertionError("recomputed")

    monkeypatch.setattr(matrix_module, "view_logits", recomputed)
    again = model_views(models_of(repo), tune.images, CPU, 5.0, cache)
    assert all(np.array_equal(first[name].logits, again[name].logits) for name in first)
    for rotation, images in ((4.0, tune.images), (5.0, tune.images[::-1])):
        with pytest.raises(AssertionError, match="recomputed"):
            model_views(models_of(repo), images, CPU, rotation, cache)
