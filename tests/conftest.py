"""Shared fixtures: a tiny synthetic dataset generated once per session."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_params() -> dict:
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


def tiny_synthetic(params: dict, seed: int = 0) -> dict:
    cfg = copy.deepcopy(params["synthetic"])
    cfg.update(seed=seed, internal_per_class={"Training": 10, "Testing": 3},
               external_per_label=10)
    return cfg


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory, project_params) -> Path:
    """A tiny synthetic set (both datasets) with its ground truth."""
    from tumorscreen.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, tiny_synthetic(project_params))
    return root


@pytest.fixture(scope="session")
def ground_truth(synthetic_root) -> dict:
    return json.loads((synthetic_root / "ground_truth.json").read_text())


@pytest.fixture(scope="session")
def repo(tmp_path_factory) -> Path:
    """The whole pipeline reproduced once on tiny synthetic data, committed."""
    from tests.pipeline import PROJECT, copy_project, dvc, run, stages_run

    root = copy_project(tmp_path_factory.mktemp("e2e"))
    run(root, "git", "init", "-q")
    dvc(root, "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "import the project")  # as a clone has: dvclive needs it
    first = dvc(root, "repro")
    assert stages_run(first.stdout) == set(yaml.safe_load((PROJECT / "dvc.yaml").read_text())
                                           ["stages"])
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "first run")
    return root
