"""The synthetic default scores QC and dedup against its own ground truth."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_synthetic
from tumorscreen.data.dedup import (
    fingerprint,
    group_labels,
    near_duplicate_pairs,
)
from tumorscreen.data.manifest import ingest_dataset, list_files
from tumorscreen.data.synthetic import (
    INTERNAL_SITE,
    generate_synthetic,
    render_phantom,
)
from tumorscreen.imaging.decode import decode_image
from tumorscreen.imaging.qc import qc_image


def digest_tree(root: Path) -> str:
    h = hashlib.sha256()
    for rel in list_files(root):
        h.update(rel.encode() + (root / rel).read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_per_seed(tmp_path, project_params, synthetic_root):
    generate_synthetic(tmp_path / "same", tiny_synthetic(project_params, seed=0))
    generate_synthetic(tmp_path / "other", tiny_synthetic(project_params, seed=1))
    assert digest_tree(tmp_path / "same") == digest_tree(synthetic_root)
    assert digest_tree(tmp_path / "other") != digest_tree(synthetic_root)


def test_layouts_match_the_real_datasets(synthetic_root):
    folders = {str(Path(p).parent) for p in list_files(synthetic_root)}
    internal = {f for f in folders if f.startswith("internal")}
    external = {f for f in folders if f.startswith("external")}
    assert internal == {f"internal/{s}/{c}" for s in ("Training", "Testing")
                        for c in ("glioma", "meningioma", "notumor", "pituitary")}
    assert external == {"external/yes", "external/no"}


def test_phantom_carries_a_smooth_non_constant_bias():
    image, field = render_phantom(np.random.default_rng(0), "glioma", 96, 96, INTERNAL_SITE)
    assert image.dtype == np.uint8 and image.shape == field.shape == (96, 96)
    assert field.max() / field.min() > 1.2
    assert np.abs(np.diff(np.log(field), axis=0)).max() < 0.05


@pytest.fixture(scope="module")
def qc_frame(synthetic_root, project_params, tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    rows = [r for d in ("internal", "external")
            for r in ingest_dataset(d, synthetic_root / d, raw)]
    results = [qc_image(r, raw / r["path"], project_params["qc"]) for r in rows]
    frame = pd.concat([pd.DataFrame(rows), pd.DataFrame(results)], axis=1)
    frame["key"] = frame["dataset"] + "/" + frame["original_path"]
    frame["file"] = [str(raw / p) for p in frame["path"]]
    return frame


def test_qc_rejects_exactly_the_injected_faults(qc_frame, ground_truth):
    injected = {rel for files in ground_truth["faults"].values() for rel in files}
    rejected = set(qc_frame.loc[qc_frame["qc_decision"] == "reject", "key"])
    assert all(len(files) >= 1 for files in ground_truth["faults"].values())
    assert rejected == injected


def test_qc_flags_burnt_in_text_and_the_benign_mismatch(qc_frame, ground_truth):
    usable = qc_frame[qc_frame["qc_decision"] != "reject"].set_index("key")
    external = usable[usable["dataset"] == "external"]
    assert (external["qc_findings"].str.contains("text_markers")).all()
    internal = usable[usable["dataset"] == "internal"]
    assert not internal["qc_findings"].str.contains("text_markers").any()
    for rel, rule in ground_truth["benign"].items():
        assert usable.loc[rel, "qc_decision"] == "flag" and rule in usable.loc[rel, "qc_reason"]


def test_dedup_recovers_every_injected_group_and_merges_no_phantoms(
        qc_frame, ground_truth, project_params):
    cfg = project_params["dedup"]
    usable = qc_frame[qc_frame["qc_decision"] != "reject"].reset_index(drop=True)
    prints = [fingerprint(decode_image(f, 10**8).gray, cfg) for f in usable["file"]]
    pairs, candidates = near_duplicate_pairs(prints, cfg["max_hamming"], cfg["min_correlation"])
    labels = group_labels(len(usable), pairs)
    group_of = dict(zip(usable["key"], labels, strict=True))
    truth_groups = ground_truth["duplicate_groups"]
    assert len(truth_groups) >= 5
    recovered = [len({group_of[rel] for rel in group}) == 1 for group in truth_groups]
    assert all(recovered), "dedup recall below 1.0"
    phantom = {rel: rec["phantom"] for rel, rec in ground_truth["files"].items()}
    for label in set(labels):
        members = usable.loc[labels == label, "key"]
        assert len({phantom[rel] for rel in members}) == 1, "a group merged two phantoms"
    kinds = {ground_truth["files"][rel]["duplicate_kind"] for g in truth_groups for rel in g}
    assert {"exact", "mirror", "contrast", "cross_dataset"} <= kinds
    assert candidates > len(pairs), "the verification step rejected no pHash candidate"
