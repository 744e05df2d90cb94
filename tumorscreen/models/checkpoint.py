"""Checkpoints: a state dict (loaded with ``weights_only=True``) plus a small JSON config.

A checkpoint is a directory, ``model.pt`` + ``config.json``, so DVC tracks it as one output.
The config holds what is needed to rebuild the network and to run it at the precision it
was trained in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tumorscreen.errors import TumorScreenError
from tumorscreen.models.backbones import GREY, ScreenNet, build_network
from tumorscreen.records import read_json, write_json

WEIGHTS, CONFIG = "model.pt", "config.json"


def save_checkpoint(folder: str | Path, model: ScreenNet, config: dict[str, Any]) -> None:
    """Write ``model.pt`` (CPU state dict) and ``config.json`` (backbone, classes, precision)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS)
    write_json(folder / CONFIG, config)


def load_checkpoint(folder: str | Path) -> tuple[ScreenNet, dict[str, Any]]:
    """Rebuild the network from ``config.json`` (no weight download) and load its weights."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise TumorScreenError(f"{folder}: not a checkpoint (needs {WEIGHTS} and {CONFIG})")
    config = read_json(folder / CONFIG)
    model, _ = build_network(config["backbone"], len(config["classes"]), pretrained=False,
                             dropout=config.get("dropout", 0.0),
                             input_gammas=config.get("input_gammas", GREY),
                             global_pool=config.get("global_pool", "avg"))
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise TumorScreenError(
            f"{folder}: weights do not fit {config['backbone']}: {first}") from None
    return model.eval(), config
