"""The seed-spread benchmark's pure parts: which runs it accepts, the spread it reports and
the images it finds behind the lost tumour-vs-healthy pairs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.profiles import REAL_CPU
from benchmarks.seeds import (
    images_behind_lost_pairs,
    one_per_group_weights,
    refuse_other_settings,
    spread,
)
from benchmarks.train import train_settings
from benchmarks.update_readme import RESULTS, seeds_block
from tumorscreen.models.score import CLASSES, NO_TUMOR
from tumorscreen.train.data import LabelledImages


def run_at(settings: dict) -> dict:
    return {"arms": {"raw": {"settings": settings}}}


def test_only_the_profile_at_the_named_seed_is_accepted():
    profile = train_settings(REAL_CPU, {})
    refuse_other_settings(run_at(profile), seed=0, default_seed=0)
    refuse_other_settings(run_at({**profile, "train.seed": 3}), seed=3, default_seed=0)
    with pytest.raises(SystemExit, match="trained seed 2"):
        refuse_other_settings(run_at({**profile, "train.seed": 2}), seed=3, default_seed=0)
    with pytest.raises(SystemExit, match="other settings"):
        refuse_other_settings(run_at({**profile, "train.lr": 0.01}), seed=0, default_seed=0)


def test_spread_counts_the_seeds_meeting_each_criterion_in_its_own_sense():
    rows = [{"accuracy": {"value": a}, "macro_auroc": {"value": 0.998},
             "tumor_auroc": {"value": t}, "test_ece_after_t": e}
            for a, t, e in ((0.94, 0.9985, 0.015), (0.96, 0.9991, 0.025), (0.97, 0.999, 0.02))]
    out = spread(rows)
    assert out["accuracy"]["seeds_meeting"] == 2
    assert out["tumor_auroc"]["seeds_meeting"] == 2  # 0.999 itself meets ">= 0.999"
    assert out["test_ece_after_t"]["seeds_meeting"] == 2  # lower is better
    assert out["tumor_auroc"]["mean"] == pytest.approx(np.mean([0.9985, 0.9991, 0.999]), abs=1e-5)
    assert out["tumor_auroc"]["sd"] == pytest.approx(np.std([0.9985, 0.9991, 0.999], ddof=1),
                                                      abs=1e-5)


def test_lost_pairs_are_traced_to_the_groups_that_recur_across_seeds():
    tumour = CLASSES.index("glioma")
    labels = np.array([tumour, tumour, tumour, NO_TUMOR, NO_TUMOR])
    manifest = pd.DataFrame({"id": [f"i{k}" for k in range(5)], "label": np.array(CLASSES)[labels],
                             "split_folder": ["Training", "Testing", "Training", "Training",
                                              "Training"],
                             "group": ["g0", "g0", "g2", "g3", None]})
    test = LabelledImages(np.zeros((5, 4, 4), np.uint8), labels, manifest)
    # seed 0: tumour i0 below both healthy images; seed 1: its copy i1 below one, i0 below one
    pairs = np.array([[2, 0, 0, 1, 1], [1, 1, 0, 1, 1]], float)
    out = images_behind_lost_pairs(test, pairs)
    assert out["misordered_pairs_by_seed"] == [2, 2]
    assert out["images_misordered_at_any_seed"] == {"tumour": 2, "healthy": 2}
    assert out["share_on_tumour_images_at_every_seed"] == pytest.approx(3 / 4)
    assert out["share_on_tumour_images_at_half_the_seeds_or_more"] == 1
    (copies,) = out["groups"]["tumour"]  # i2 lost no pair, so g2 is not listed
    assert copies == {"group": "g0", "label": "glioma", "images": 2, "ids": ["i0", "i1"],
                      "folders": ["Testing", "Training"], "seeds_misordered": 2,
                      "pairs_by_seed": [2, 2]}
    assert [g["group"] for g in out["groups"]["healthy"]] == ["g3", "i4"]  # no group: itself


def test_group_weights_count_each_near_duplicate_group_once():
    weights = one_per_group_weights(np.array(["a", "b", "a", "c", "a", "b"]))
    assert weights.tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 3, 1, 1 / 3, 1 / 2])
    assert weights.sum() == pytest.approx(3)


def test_the_readme_block_renders_one_seed_without_a_spread():
    result = json.loads((RESULTS / "seeds.json").read_text())
    one = {**result, "seeds": result["seeds"][:1], "spread": spread(result["seeds"][:1])}
    block = seeds_block(one)
    row = next(line for line in block.splitlines()
               if line.startswith("| tumour-vs-healthy AUROC | >= 0.999 |"))
    assert "(-)" in row and row.endswith("| 0 of 1 |")  # seed 0: 0.9981


def test_a_wrong_stored_run_is_refused_before_any_seed_is_trained(tmp_path, monkeypatch):
    import benchmarks.seeds as seeds

    wrong = tmp_path / "store" / "seed-1"
    (wrong / "raw").mkdir(parents=True)
    (wrong / "raw" / "model.pt").touch()
    (wrong / "run.json").write_text(json.dumps(
        run_at({**train_settings(REAL_CPU, {}), "train.seed": 1, "train.lr": 0.01})))
    trained = []
    monkeypatch.setattr(seeds, "train_seed", lambda *args: trained.append(args))
    with pytest.raises(SystemExit, match="other settings"):
        seeds.seeds_benchmark(tmp_path / "work", tmp_path / "store", [0, 1])
    assert trained == []  # seed 0 was missing, but nothing was trained
