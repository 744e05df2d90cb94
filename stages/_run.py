"""Shared entry point: a stage's bad input becomes a one-line reason and exit code 1."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tumorscreen.errors import TumorScreenError
from tumorscreen.params import load_params


def run_stage(name: str, stage: Callable[[dict], None]) -> None:
    try:
        stage(load_params(name))
    except TumorScreenError as error:
        print(f"{name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
