"""A throw-away project workspace for running stages on real data, outside the repo.

The code is linked, not copied; params.yaml is the project's with overrides applied, so a
benchmark measures exactly the stages users run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tumorscreen.params import set_dotted

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"


def make_workspace(root: Path, overrides: dict[str, Any]) -> Path:
    """Lay out ``root`` as a project: linked code, dvc.yaml, and overridden params.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("stages", "tumorscreen", "dvc.yaml"):
        link = root / name
        if not link.exists():
            link.symlink_to(PROJECT / name)
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    for key, value in overrides.items():
        set_dotted(params, key, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
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
    subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=root, check=True)
    return time.perf_counter() - start
