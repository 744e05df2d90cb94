"""The external comparison matrix: model x TTA x calibration, with the same toggles for
every model, and the tumour scores of each row."""

from __future__ import annotations

import hashlib
import json
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


def views_key(checkpoint_sha256: dict[str, str], images: np.ndarray,
              rotation_deg: float) -> str:
    """What view logits depend on: the weights, the exact images and the TTA views."""
    digest = hashlib.sha256(json.dumps([checkpoint_sha256, rotation_deg],
                                       sort_keys=True).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def model_views(checkpoints: dict[str, tuple[Path, Path]], images: np.ndarray,
                device: torch.device, rotation_deg: float,
                cache: Path | None = None) -> dict[str, ModelViews]:
    """Each named (checkpoint folder, calibration JSON) model's TTA view logits on (N, S, S)
    uint8 images, with its temperature and checkpoint hash.

    ``cache`` (an .npz) keeps the logits between runs, keyed by ``views_key``: a policy
    experiment then refits thresholds without running the networks again."""
    hashes = {name: sha256_file(Path(folder) / WEIGHTS)
              for name, (folder, _) in checkpoints.items()}
    key = views_key(hashes, images, rotation_deg)
    stored = np.load(cache) if cache is not None and cache.is_file() else None
    if stored is None or str(stored["key"]) != key:
        stored = {name: view_logits(*load_checkpoint(folder), images, device, rotation_deg)
                  for name, (folder, _) in checkpoints.items()}
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, key=np.array(key), **stored)
    return {name: ModelViews(np.asarray(stored[name]),
                             float(read_json(calibration)["temperature"]), hashes[name])
            for name, (_, calibration) in checkpoints.items()}


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
