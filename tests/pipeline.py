"""Helpers to run the DVC pipeline in a temporary git+DVC repo with tiny synthetic sizes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def scratch_copy(repo: Path, tmp_path: Path, **overrides) -> Path:
    """A copy of the repo's working tree (no git, no DVC) with param overrides."""
    work = tmp_path / "work"
    shutil.copytree(repo, work, ignore=shutil.ignore_patterns(".git", ".dvc"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    for dotted, value in overrides.items():
        set_dotted(params, dotted, value)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


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
    params["train"].update(epochs=3, patience=3, probe_steps=1)
    params["evaluate"].update(bootstrap=50)
    params["evaluate_external"].update(bootstrap=50)
    for dotted, value in overrides.items():
        set_dotted(params, dotted, value)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def with_downstream(*names: str) -> set[str]:
    """The named stages and every stage that depends on their outputs, from dvc.yaml."""
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]

    def outs(stage: dict) -> list[str]:
        return [next(iter(o)) if isinstance(o, dict) else o
                for o in stage.get("outs", []) + stage.get("metrics", [])]

    chosen = set(names)
    while True:
        produced = [out for name in chosen for out in outs(stages[name])]
        grown = chosen | {name for name, stage in stages.items()
                          if any(dep == out or dep.startswith(out + "/") or
                                 out.startswith(dep + "/")
                                 for dep in stage.get("deps", []) for out in produced)}
        if grown == chosen:
            return chosen
        chosen = grown


def stage_error(root: Path, stage: str) -> str:
    """Run one stage expecting bad input: exit code 1 and exactly one line on stderr."""
    result = run(root, sys.executable, "-m", f"stages.{stage}", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, (result.returncode, result.stderr)
    return lines[0]
