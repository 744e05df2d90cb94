"""End to end: the DVC pipeline on a tiny synthetic set, in a temporary git+DVC repo."""

from __future__ import annotations

import json

import pandas as pd

from tests.pipeline import copy_project, dvc, run, stage_error, stages_run, with_downstream


def test_repro_writes_every_output_and_loses_no_row(repo):
    raw = pd.read_csv(repo / "data/raw/manifest.csv")
    qc = pd.read_csv(repo / "data/qc/manifest.csv")
    splits = pd.read_csv(repo / "data/split/splits.csv")
    assert len(raw) == len(qc) == len(splits)
    assert list(qc["id"]) == list(raw["id"])
    truth = json.loads((repo / "data/raw/ground_truth.json").read_text())
    assert (qc["qc_decision"] == "reject").sum() == sum(map(len, truth["faults"].values()))
    split = json.loads((repo / "metrics/split.json").read_text())
    assert split["leakage_count"] == 0
    assert {"train", "val", "test", "adapt", "tune", "holdout"} <= set(split["splits"])
    assert "provenance" in split and "split_sha256" in split["provenance"]
    gallery = (repo / "plots/qc_gallery.html").read_text()
    assert "data:image/png;base64" in gallery and "reject: blank" in gallery


def test_nothing_reruns_when_nothing_changed(repo):
    assert stages_run(dvc(repo, "repro").stdout) == set()


def test_exp_run_on_split_seed_reruns_split_only_and_metrics_diff_works(repo):
    result = dvc(repo, "exp", "run", "-S", "split.seed=1")
    assert stages_run(result.stdout) == with_downstream("split")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "split seed 1")
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "HEAD", "--json").stdout)
    changed = diff["metrics/split.json"]
    assert any(key.startswith("splits.") for key in changed)
    assert "metrics/qc.json" not in diff


def test_stage_bad_input_gives_one_line_and_exit_1(tmp_path):
    root = copy_project(tmp_path, **{"download.source": "local",
                                     "download.internal.local": str(tmp_path / "nope.zip")})
    assert stage_error(root, "download") == (
        f"download: local dataset not found: {tmp_path / 'nope.zip'}")
