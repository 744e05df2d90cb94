"""The external comparison matrix: model x TTA x calibration, with the same toggles for
every model, and the tumour scores of each row."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tumorscreen.models.checkpoint import WEIGHTS, load_checkpoint
from tumorscreen.models.score import tumor_score
from tumorscreen.models.tta import combine_views, view_logits
from tumorscreen.records import read_json, sha256_file

MODELS = ("base", "finetuned")


@dataclass(frozen=True)
class Variant:
    model: str
    tta: bool
    calibrated: bool

    @property
    def key(self) -> str:
        return (f"{self.model}|tta={'on' if self.tta else 'off'}"
                f"|calibration={'on' if self.calibrated else 'off'}")


def matrix(models: tuple[str, ...] = MODELS) -> list[Variant]:
    """Every (model, TTA, calibration) row, models outermost."""
    return [Variant(model, tta, calibrated)
            for model, tta, calibrated in product(models, (False, True), (False, True))]


def row_temperature(variant: Variant, temperature: float) -> float:
    """The T a row applies: the model's fitted T when calibrated, else 1."""
    return temperature if variant.calibrated else 1.0


def variant_scores(view_logits: np.ndarray, variant: Variant, temperature: float) -> np.ndarray:
    """(V, N, K) view logits of the row's model -> (N,) tumour scores under the row's toggles."""
    return tumor_score(combine_views(view_logits, variant.tta),
                       row_temperature(variant, temperature))


@dataclass(frozen=True)
class ModelViews:
    logits: np.ndarray  # (V, N, K), identity view first
    temperature: float  # the model's fitted T
    checkpoint_sha256: str


def model_views(checkpoints: dict[str, tuple[Path, Path]], images: np.ndarray,
                device: torch.device, rotation_deg: float) -> dict[str, ModelViews]:
    """Each named (checkpoint folder, calibration JSON) model's TTA view logits on (N, S, S)
    uint8 images, with its temperature and checkpoint hash."""
    views = {}
    for name, (folder, calibration) in checkpoints.items():
        model, config = load_checkpoint(folder)
        views[name] = ModelViews(view_logits(model, config, images, device, rotation_deg),
                                 float(read_json(calibration)["temperature"]),
                                 sha256_file(Path(folder) / WEIGHTS))
    return views


def _with_ci(figure: dict) -> str:
    if figure.get("value") is None:
        return "-"
    return f"{figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """One line per matrix row: toggles, T, threshold, AUROC and rates with CIs, counts,
    and the review band's coverage and accepted-case rates."""
    lines = []
    for row in rows:
        accepted = row["review"]["accepted"]
        lines.append({
            "model": row["model"], "TTA": "on" if row["tta"] else "off",
            "calibration": "on" if row["calibrated"] else "off",
            "T": round(row["temperature"], 3), "threshold": round(row["threshold"], 4),
            "AUROC": _with_ci(row["auroc"]),
            **{name: _with_ci(row[key]) for name, key in (
                ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                ("PPV", "ppv"), ("NPV", "npv"))},
            **{name.upper(): count for name, count in row["counts"].items()},
            "band": "[{:.4f}, {:.4f})".format(*row["review"]["band"]),
            "coverage": row["review"]["coverage"],
            "accepted sensitivity": _with_ci(accepted["sensitivity"]),
            "accepted specificity": _with_ci(accepted["specificity"])})
    return pd.DataFrame(lines)
