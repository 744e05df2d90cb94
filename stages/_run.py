"""Shared entry point: a stage's bad input becomes a one-line reason and exit code 1."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dvclive import Live

from tumorscreen.errors import TumorScreenError
from tumorscreen.params import load_params


def run_stage(name: str, stage: Callable[[dict], None]) -> None:
    try:
        stage(load_params(name))
    except TumorScreenError as error:
        print(f"{name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None


@contextmanager
def epoch_curves(folder: Path) -> Iterator[Callable[[dict[str, float]], None]]:
    """A per-epoch logger into dvclive (dvcyaml=False: plots are declared in dvc.yaml)."""
    with Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        def log(row: dict[str, float]) -> None:
            for name, value in row.items():
                if math.isfinite(value):
                    live.log_metric(name, value, plot=name != "epoch")
            live.next_step()

        yield log
