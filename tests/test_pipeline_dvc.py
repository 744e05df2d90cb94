"""End to end: the DVC pipeline on a tiny synthetic set, in a temporary git+DVC repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tumorscreen.params import set_dotted

PROJECT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
       "DVC_NO_ANALYTICS": "1", "PYTHONPATH": ""}


def run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "dvc", *args, check=check)


def copy_project(dest: Path, **overrides) -> Path:
    """The project's code and pipeline, with tiny synthetic sizes and param overrides."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("stages", "tumorscreen"):
        shutil.copytree(PROJECT / folder, dest / folder, ignore=ignore)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(PROJECT / name, dest / name)
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["synthetic"].update(internal_per_class={"Training": 8, "Testing": 3},
                               external_per_label=8)
    for dotted, value in overrides.items():
        set_dotted(params, dotted, value)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("e2e"))
    run(root, "git", "init", "-q")
    dvc(root, "init", "-q")
    first = dvc(root, "repro")
    assert stages_run(first.stdout) == {"download", "qc", "dedup", "split"}
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "first run")
    return root


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
    assert stages_run(result.stdout) == {"split"}
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "split seed 1")
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "HEAD", "--json").stdout)
    changed = diff["metrics/split.json"]
    assert any(key.startswith("splits.") for key in changed)
    assert "metrics/qc.json" not in diff


def test_stage_bad_input_gives_one_line_and_exit_1(tmp_path):
    root = copy_project(tmp_path, **{"download.source": "local",
                                     "download.internal.local": str(tmp_path / "nope.zip")})
    result = run(root, sys.executable, "-m", "stages.download", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"download: local dataset not found: {tmp_path / 'nope.zip'}"]
