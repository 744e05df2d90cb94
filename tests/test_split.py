import json
import sys

import pandas as pd
import pytest

from tests.pipeline import run, scratch_copy
from tumorscreen.data.split import (
    EXCLUDED,
    assign_groups,
    cross_split_leaks,
    make_splits,
    own_split_leakage,
)

CFG = {"seed": 0, "external_seed": 0,
       "internal_ratios": {"train": 0.6, "val": 0.2, "test": 0.2},
       "external_ratios": {"holdout": 0.4, "tune": 0.3, "adapt": 0.3}}


def frame(rows):
    columns = ["id", "dataset", "split_folder", "label", "tumor", "qc_decision", "group",
               "sha256"]
    return pd.DataFrame(rows, columns=columns)


def synthetic_rows(n_internal=200, n_external=60):
    rows = []
    for i in range(n_internal):
        label = ("glioma", "meningioma", "notumor", "pituitary")[i % 4]
        rows.append((f"i{i:03d}", "internal", ("Training", "Testing")[i % 5 == 0], label,
                     int(label != "notumor"), "pass", f"g{i // 8:03d}{label}", f"h{i}"))
    for k in range(n_external):
        label = ("no", "yes")[k % 2]
        rows.append((f"e{k:03d}", "external", "", label, int(label == "yes"), "pass",
                     f"x{k:03d}", f"hx{k}"))
    return frame(rows)


def test_assign_groups_follows_ratios_and_keeps_groups_whole():
    groups = pd.DataFrame({"group": [f"g{i}" for i in range(300)],
                           "stratum": ["a", "b", "c"] * 100, "size": [1, 2, 3] * 100})
    chosen = assign_groups(groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=3)
    assert set(chosen) == set(groups["group"])
    images = groups.assign(split=groups["group"].map(chosen)).groupby("split")["size"].sum()
    assert images["train"] / images.sum() == pytest.approx(0.7, abs=0.03)
    assert images["test"] / images.sum() == pytest.approx(0.15, abs=0.03)
    again = assign_groups(groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=3)
    assert again == chosen


def test_groups_never_cross_splits_and_strata_are_balanced():
    out = make_splits(synthetic_rows(), CFG)
    assert (out.groupby("group")["split"].nunique() == 1).all()
    test = out[out["split"] == "test"]["label"].value_counts()
    assert test.min() >= 8
    holdout = out[out["split"] == "holdout"]["label"].value_counts()
    assert holdout["no"] == holdout["yes"] == 12


def test_internal_twins_of_external_images_leave_the_internal_side():
    rows = synthetic_rows()
    rows.loc[rows["id"] == "i000", "group"] = "x001"  # i000 (glioma) is a twin of e001 (yes)
    out = make_splits(rows, CFG).set_index("id")
    assert out.loc["i000", "split"] == EXCLUDED
    assert out.loc["i000", "split_reason"] == "internal_twin_of_external"
    assert out.loc["e001", "split"] in {"holdout", "tune", "adapt"}


def test_label_conflicts_are_excluded_and_rejects_kept_as_rows():
    rows = synthetic_rows()
    rows.loc[rows["id"] == "i001", "group"] = "g000glioma"  # a meningioma in a glioma group
    rows.loc[rows["id"] == "i006", ["qc_decision", "group"]] = ["reject", ""]
    out = make_splits(rows, CFG).set_index("id")
    assert len(out) == len(rows)
    conflicted = ["i000", "i001", "i004"]  # i000 and i004 form g000glioma
    assert (out.loc[conflicted, "split_reason"] == "label_conflict").all()
    assert (out.loc[conflicted, "split"] == EXCLUDED).all()
    assert out.loc["i006", "split_reason"] == "qc_reject"


def test_external_holdout_is_frozen_when_the_internal_seed_changes():
    rows = synthetic_rows()
    first = make_splits(rows, CFG).set_index("id")["split"]
    second = make_splits(rows, {**CFG, "seed": 7}).set_index("id")["split"]
    external = [i for i in first.index if i.startswith("e")]
    internal = [i for i in first.index if i.startswith("i")]
    assert (first[external] == second[external]).all()
    assert (first[internal] != second[internal]).any()


def test_leakage_measure_sees_a_planted_leak():
    out = make_splits(synthetic_rows(), CFG)
    train = out[out["split"] == "train"]["id"].iloc[0]
    test = out[out["split"] == "test"]["id"].iloc[0]
    clean = pd.DataFrame({"a": ["i000"], "b": ["i004"], "mirrored": [False]})  # one group
    assert cross_split_leaks(out, clean) == {
        "near_duplicate_pairs_across_splits": 0, "identical_files_across_splits": 0}
    planted = pd.DataFrame({"a": [train], "b": [test], "mirrored": [False]})
    assert cross_split_leaks(out, planted)["near_duplicate_pairs_across_splits"] == 1
    out.loc[out["id"] == test, "sha256"] = out.loc[out["id"] == train, "sha256"].item()
    assert cross_split_leaks(out, clean)["identical_files_across_splits"] == 1


def test_own_folder_leakage_counts_testing_and_external_twins():
    rows = synthetic_rows()  # i000 is in Testing; i001, i002 and i003 in Training
    pairs = pd.DataFrame({"a": ["i000", "e000", "i002"], "b": ["i001", "i003", "i003"],
                          "mirrored": [False] * 3})
    found = own_split_leakage(rows, pairs)
    assert found["testing_images_with_training_near_duplicate"] == 1
    assert found["external_images_with_internal_near_duplicate"] == 1


def test_twins_of_adapt_images_join_train_only_when_asked_and_leak_nothing():
    rows = synthetic_rows()
    plain = make_splits(rows, CFG).set_index("id")
    adapt = plain[plain["split"] == "adapt"].index[0]
    holdout = plain[plain["split"] == "holdout"].index[0]
    label = "notumor" if plain.loc[adapt, "tumor"] == 0 else "glioma"
    twin_of_adapt = rows[(rows["dataset"] == "internal") & (rows["label"] == label)]["id"].iloc[0]
    twin_of_holdout = rows[(rows["dataset"] == "internal")
                           & (rows["tumor"] == plain.loc[holdout, "tumor"])
                           & (rows["id"] != twin_of_adapt)]["id"].iloc[-1]
    rows.loc[rows["id"] == twin_of_adapt, "group"] = plain.loc[adapt, "group"]
    rows.loc[rows["id"] == twin_of_holdout, "group"] = plain.loc[holdout, "group"]
    pairs = pd.DataFrame({"a": [twin_of_adapt, twin_of_holdout], "b": [adapt, holdout],
                          "mirrored": [False, False]})

    default = make_splits(rows, CFG).set_index("id")
    joined = make_splits(rows, {**CFG, "adapt_twins_to_train": True}).set_index("id")
    assert default.loc[twin_of_adapt, "split"] == EXCLUDED
    assert joined.loc[twin_of_adapt, ["split", "split_reason"]].tolist() == [
        "train", "internal_twin_of_adapt"]
    for out in (default, joined):
        assert out.loc[twin_of_holdout, "split"] == EXCLUDED
        assert out.loc[twin_of_holdout, "split_reason"] == "internal_twin_of_external"
        assert cross_split_leaks(out.reset_index(), pairs)[
            "near_duplicate_pairs_across_splits"] == 0
    others = joined.index.difference([twin_of_adapt])
    assert (joined.loc[others, "split"] == default.loc[others, "split"]).all()
    # train and adapt count as one side; a pair from either to a scored split still leaks
    scored = joined[joined["split"] == "val"].index[0]
    planted = pd.DataFrame({"a": [adapt, twin_of_adapt], "b": [scored, scored],
                            "mirrored": [False, False]})
    assert cross_split_leaks(joined.reset_index(), planted)[
        "near_duplicate_pairs_across_splits"] == 2


def test_split_stage_moves_exactly_the_twins_of_adapt_images_into_train(repo, tmp_path):
    work = scratch_copy(repo, tmp_path, **{"split.adapt_twins_to_train": True})
    run(work, sys.executable, "-m", "stages.split")
    before = pd.read_csv(repo / "data/split/splits.csv", keep_default_na=False).set_index("id")
    after = pd.read_csv(work / "data/split/splits.csv", keep_default_na=False).set_index("id")
    adapt_groups = set(before.loc[before["split"] == "adapt", "group"])
    twins_of_adapt = before.index[(before["split_reason"] == "internal_twin_of_external")
                                  & before["group"].isin(adapt_groups)]
    assert len(twins_of_adapt) > 0  # the synthetic set plants cross-dataset twins
    assert set(after.index[after["split"] != before["split"]]) == set(twins_of_adapt)
    assert (after.loc[twins_of_adapt, "split"] == "train").all()
    metrics = json.loads((work / "metrics/split.json").read_text())
    assert metrics["adapt_twins_in_train"] == len(twins_of_adapt)
    assert metrics["leakage_count"] == 0
    default = json.loads((repo / "metrics/split.json").read_text())
    assert default["adapt_twins_in_train"] == 0
