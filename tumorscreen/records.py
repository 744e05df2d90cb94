"""Small shared records: file hashing, JSON writing and the provenance block of metrics."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

TRACKED_PACKAGES = (
    "tumorscreen", "numpy", "pandas", "pillow", "opencv-python-headless", "imagehash",
    "scipy", "scikit-learn", "SimpleITK", "torch", "torchvision", "timm", "dvc",
)


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results (absent ones are omitted)."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name ("Intel(R) Xeon(R) ...", "AMD EPYC ..."), or the architecture.

    CPU kernels differ between CPU models, so fp32 training is bit-for-bit repeatable on one
    model but not across models; records name it so two results can be told apart.
    """
    cpuinfo = Path(cpuinfo)
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def machine_record() -> dict[str, Any]:
    """The machine a benchmark ran on: CPU count, CPU model and platform."""
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform()}


def provenance(**fields: Any) -> dict[str, Any]:
    """The provenance block every metrics JSON carries: given fields plus package versions."""
    return {**fields, "versions": package_versions()}


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | Path, payload: Any) -> None:
    """Write stable, diff-friendly JSON (sorted keys, indented), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_to_builtin) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path) as handle:
        return json.load(handle)
