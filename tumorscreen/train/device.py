"""Device and precision: ``auto`` picks cuda, then mps, then cpu; AMP only where it pays.

The precision a model was trained in is stored with it and reused for every later forward
pass (val, test, calibration, inference), so no stage silently changes numerics.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from tumorscreen.errors import TumorScreenError
from tumorscreen.records import cpu_model

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TumorScreenError(f"device {name!r} requested but CUDA is not available")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise TumorScreenError(f"device must be auto, cpu, mps or cuda[:N], got {name!r}")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> bf16 (or fp16) autocast on CUDA, fp32 elsewhere (CPU bf16 needs AVX512)."""
    if name not in PRECISIONS:
        raise TumorScreenError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast to the given precision, or nothing for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device.type, dtype=DTYPES[precision]):
        yield


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (CPU and CUDA) and make CPU kernels deterministic; returns a generator."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def describe_device(device: torch.device) -> dict[str, str | int]:
    """Device name (the GPU's, the CPU model's, or "mps") and thread count, for run records."""
    name = device.type
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = cpu_model()
    return {"device": str(device), "name": name, "torch_threads": torch.get_num_threads()}
