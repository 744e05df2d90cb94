"""Holdout-safe, group-aware, stratified splits across the internal and external datasets.

Order matters: the external holdout is frozen first (its own seed), internal members of
any group that holds an external image are removed, label-conflicting groups are excluded,
then the remaining internal groups are split. A group never straddles two splits, except
that internal twins of adapt images may optionally join train: both splits are only ever
fitted on, never scored.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from tumorscreen.data.layout import EXTERNAL, INTERNAL

EXCLUDED = "excluded"
TRAIN = "train"
INTERNAL_SPLITS = (TRAIN, "val", "test")
EXTERNAL_SPLITS = ("adapt", "tune", "holdout")
FITTED_SPLITS = frozenset({TRAIN, "adapt"})  # fitted on only: a pair between them leaks nothing
ALL_SPLITS = (*INTERNAL_SPLITS, *EXTERNAL_SPLITS, EXCLUDED)


def assign_groups(
    groups: pd.DataFrame, ratios: Mapping[str, float], seed: int
) -> dict[str, str]:
    """Split name for each group, stratified by ``groups['stratum']``, sized by image counts.

    ``groups`` has one row per group with columns ``group``, ``stratum`` and ``size``. Within
    each stratum the groups are shuffled (seeded) and laid end to end; a group goes to the
    split whose share of the stratum contains the group's midpoint. Splits are filled in
    the order of ``ratios``.
    """
    names = list(ratios)
    shares = np.array([ratios[n] for n in names], dtype=float)
    bounds = np.cumsum(shares / shares.sum())
    rng = np.random.default_rng(seed)
    assigned: dict[str, str] = {}
    for _stratum, block in groups.sort_values("group").groupby("stratum", sort=True):
        block = block.iloc[rng.permutation(len(block))]
        total = block["size"].sum()
        midpoints = (block["size"].cumsum() - block["size"] / 2) / total
        slots = np.minimum(np.searchsorted(bounds, midpoints.to_numpy(), side="right"),
                           len(names) - 1)
        assigned.update(zip(block["group"], (names[s] for s in slots), strict=True))
    return assigned


def label_conflicts(rows: pd.DataFrame) -> set[str]:
    """Groups whose members disagree: on the class among internal members, or on tumour
    status among all members."""
    internal = rows[rows["dataset"] == INTERNAL].groupby("group")["label"].nunique()
    tumour = rows.groupby("group")["tumor"].nunique()
    return set(internal[internal > 1].index) | set(tumour[tumour > 1].index)


def make_splits(rows: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Add ``split`` and ``split_reason`` to every row of the QC manifest.

    ``rows`` needs id, dataset, label, tumor, qc_decision and group (empty for QC rejects).
    ``cfg`` holds ``seed``, ``external_seed``, ``internal_ratios`` and ``external_ratios``,
    and optionally ``adapt_twins_to_train``: internal twins of images in the external adapt
    split then join internal train (``split_reason`` "internal_twin_of_adapt") instead of
    being excluded; twins of tune and holdout images are always excluded.
    """
    out = rows.copy()
    out["split"], out["split_reason"] = EXCLUDED, ""
    rejected = out["qc_decision"] == "reject"
    out.loc[rejected, "split_reason"] = "qc_reject"
    usable = out[~rejected]
    conflicts = label_conflicts(usable)
    in_conflict = out["group"].isin(conflicts) & ~rejected
    out.loc[in_conflict, "split_reason"] = "label_conflict"

    eligible = out[~rejected & ~in_conflict]
    external_groups = set(eligible.loc[eligible["dataset"] == EXTERNAL, "group"])
    twins = (eligible["dataset"] == INTERNAL) & eligible["group"].isin(external_groups)
    out.loc[twins[twins].index, "split_reason"] = "internal_twin_of_external"

    for dataset, stratum, ratios, seed in (
        (EXTERNAL, "tumor", cfg["external_ratios"], cfg["external_seed"]),
        (INTERNAL, "label", cfg["internal_ratios"], cfg["seed"]),
    ):
        members = eligible[(eligible["dataset"] == dataset) & ~twins]
        groups = members.groupby("group").agg(stratum=(stratum, "first"), size=("id", "size"))
        chosen = assign_groups(groups.reset_index(), ratios, seed)
        out.loc[members.index, "split"] = members["group"].map(chosen)
    if cfg.get("adapt_twins_to_train", False):
        adapt_groups = set(out.loc[out["split"] == "adapt", "group"])  # only external rows
        joining = twins & eligible["group"].isin(adapt_groups)
        out.loc[joining[joining].index, ["split", "split_reason"]] = [
            TRAIN, "internal_twin_of_adapt"]
    return out


def leak_side(splits: pd.Series) -> pd.Series:
    """The split each row counts as when leaks are measured: the fitted splits as one."""
    return splits.where(~splits.isin(FITTED_SPLITS), TRAIN)


def cross_split_leaks(rows: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, int]:
    """Measured leakage of produced splits: near-duplicate pairs and byte-identical files
    whose two sides sit in two different (non-excluded) splits, train and adapt counting as
    one side, since neither is scored."""
    side = leak_side(rows.set_index("id")["split"])
    a, b = pairs["a"].map(side), pairs["b"].map(side)
    pair_leaks = int(((a != b) & (a != EXCLUDED) & (b != EXCLUDED)).sum())
    kept = rows[rows["split"] != EXCLUDED]
    identical = leak_side(kept["split"]).groupby(kept["sha256"]).nunique()
    return {"near_duplicate_pairs_across_splits": pair_leaks,
            "identical_files_across_splits": int((identical > 1).sum())}


def pair_categories(rows: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, int]:
    """Near-duplicate pairs within one folder, across a dataset's folders, across datasets."""
    info = rows.set_index("id")[["dataset", "split_folder"]]
    a, b = info.loc[pairs["a"]].to_numpy(), info.loc[pairs["b"]].to_numpy()
    same_dataset = a[:, 0] == b[:, 0]
    same_folder = same_dataset & (a[:, 1] == b[:, 1])
    return {"within_folder": int(same_folder.sum()),
            "across_folders": int((same_dataset & ~same_folder).sum()),
            "across_datasets": int((~same_dataset).sum()),
            "mirrored": int(pairs["mirrored"].sum())}


def own_split_leakage(rows: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, int | float]:
    """How the datasets' own folders leak: Testing images with a near-duplicate in Training,
    and external images with a near-duplicate anywhere in the internal set."""
    info = rows.set_index("id")[["dataset", "split_folder"]]
    both = pd.concat([pairs[["a", "b"]], pairs[["b", "a"]].set_axis(["a", "b"], axis=1)])
    left, right = info.loc[both["a"]].to_numpy(), info.loc[both["b"]].to_numpy()
    testing = (left[:, 0] == INTERNAL) & (left[:, 1] == "Testing")
    leaked_test = both["a"][testing & (right[:, 0] == INTERNAL) & (right[:, 1] == "Training")]
    external_twin = both["a"][(left[:, 0] == EXTERNAL) & (right[:, 0] == INTERNAL)]
    n_testing = int(((rows["dataset"] == INTERNAL) & (rows["split_folder"] == "Testing")).sum())
    n_external = int((rows["dataset"] == EXTERNAL).sum())
    return {
        "testing_images": n_testing,
        "testing_images_with_training_near_duplicate": int(leaked_test.nunique()),
        "testing_fraction_leaked": round(leaked_test.nunique() / max(n_testing, 1), 4),
        "external_images": n_external,
        "external_images_with_internal_near_duplicate": int(external_twin.nunique()),
    }
