"""A throw-away project workspace for running stages on real data, outside the repo.

The code is linked, not copied; params.yaml is the project's with overrides applied, so a
benchmark measures exactly the stages users run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tumorscreen.params import set_dotted

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"
GIT_IDENTITY = {f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
                for field, value in (("NAME", "benchmark"), ("EMAIL", "benchmark@localhost"))}


def write_params(root: Path, overrides: dict[str, Any]) -> None:
    """The project's params.yaml with dotted-key overrides, written into ``root``."""
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    for key, value in overrides.items():
        set_dotted(params, key, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_workspace(root: Path, overrides: dict[str, Any]) -> Path:
    """Lay out ``root`` as a project: linked code, dvc.yaml, and overridden params.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("stages", "tumorscreen", "dvc.yaml"):
        link = root / name
        if not link.exists():
            link.symlink_to(PROJECT / name)
    write_params(root, overrides)
    return root


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_whole(command: list[str] | tuple[str, ...], root: Path, capture: bool = False,
              env: dict[str, str] | None = None) -> str:
    """Run ``command`` in ``root`` in a process group of its own, and kill the whole group
    if this process is interrupted or terminated: a stage left running (``dvc repro``
    starts stages as grandchildren) would go on writing into the workspace. Returns stdout
    when ``capture``; raises CalledProcessError on a non-zero exit."""
    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        with subprocess.Popen(command, cwd=root, env=env, start_new_session=True, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None) as process:
            try:
                stdout, stderr = process.communicate()
            except BaseException:
                os.killpg(process.pid, signal.SIGKILL)
                raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, stdout, stderr)
    return stdout or ""


def run_timed(root: Path, *command: str) -> tuple[float, str]:
    """Run a command in ``root``; (wall seconds, stdout). Raises on a non-zero exit."""
    start = time.perf_counter()
    stdout = run_whole(command, root, capture=True,
                       env={**os.environ, **GIT_IDENTITY, "DVC_NO_ANALYTICS": "1"})
    return time.perf_counter() - start, stdout


def make_dvc_repo(root: Path, overrides: dict[str, Any]) -> Path:
    """A git+DVC repo holding a copy of the project's code and pipeline, params overridden,
    committed as a clone would be. An existing one gets the current code and params, so
    the next ``dvc repro`` runs only the stages whose inputs changed."""
    existing = (root / ".dvc").is_dir()
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("stages", "tumorscreen"):
        shutil.copytree(PROJECT / folder, root / folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(PROJECT / name, root / name)
    write_params(root, overrides)
    setup = [] if existing else [("git", "init", "-q"),
                                 (sys.executable, "-m", "dvc", "init", "-q")]
    for command in (*setup, ("git", "add", "-A"),
                    ("git", "commit", "-qm", "benchmark workspace", "--allow-empty")):
        run_timed(root, *command)
    return root


def real_data_overrides() -> dict[str, Any]:
    """Params that point the ``local`` source at the two real archives."""
    return {
        "download.source": "local",
        "download.internal.local": str(SHARED_DATA / "brain-tumor-mri-224.zip"),
        "download.external.local": str(SHARED_DATA / "navoneel-brain-mri.zip"),
    }


def run_stage_timed(root: Path, stage: str) -> float:
    """Run one stage module in the workspace; wall seconds. Raises on a non-zero exit."""
    start = time.perf_counter()
    run_whole([sys.executable, "-m", f"stages.{stage}"], root)
    return time.perf_counter() - start
