"""The audit of one image set: Grad-CAMs, focus scores, the error table, and a folder per
case worth reading (original, model input, two CAM overlays, metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from tumorscreen.data.store import load_split
from tumorscreen.explain.errors import group_distributions
from tumorscreen.explain.focus import focus_lift, focus_score, mask_area_share
from tumorscreen.explain.gradcam import grad_cam, predicted_class_target
from tumorscreen.models.score import tumor_logit
from tumorscreen.records import write_json
from tumorscreen.report.gallery import grey_picture, outline_mask

CAMS = ("tumour", "predicted")  # the tumour score's CAM and the predicted class's CAM
FOCUS_COLUMNS = ("mask_share", *(f"{kind}_{name}" for name in CAMS
                                 for kind in ("focus", "lift")))
OVERLAY_WEIGHT = 0.45  # share of the colour map in an overlay; the anatomy stays readable


def explain_images(model: nn.Module, config: dict[str, Any], images: np.ndarray,
                   temperature: float, layer: str,
                   device: torch.device) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(N, K) logits and (N, S, S) CAMs of the tumour score and of the predicted class, at
    the checkpoint's own precision.

    The tumour CAM explains the tumour logit, whose gradient is the score's divided by the
    positive per-image factor sigmoid'(logit): the same map up to scale, so the same focus
    score, but one that does not underflow where the score saturates at 0 or 1.
    """
    targets = {"tumour": lambda logits: tumor_logit(logits, temperature),
               "predicted": predicted_class_target}
    return grad_cam(model, images, targets, layer, device, config["precision"],
                    config["batch_size"], config["channels_last"])


def split_masks(root: Path, split: str, ids: pd.Series) -> np.ndarray:
    """The stored masks of the images with these ids, in their order: (N, S, S) bool."""
    arrays = load_split(root, split, mmap=True)
    rows = pd.Index(arrays.manifest["id"]).get_indexer(ids)
    if (rows < 0).any():
        raise ValueError(f"{split}: ids missing from its manifest: {list(ids[rows < 0])[:3]}")
    return np.asarray(arrays.masks[rows], bool)


def focus_columns(cams: dict[str, np.ndarray], masks: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: the mask's area share, and each CAM's focus score and lift, all (N,)."""
    share = mask_area_share(masks)
    columns = {"mask_share": share}
    for name in CAMS:
        columns[f"focus_{name}"] = focus_score(cams[name], masks)
        columns[f"lift_{name}"] = focus_lift(columns[f"focus_{name}"], share)
    return columns


def focus_distributions(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``group_distributions`` of every focus column of an audited error table."""
    return {column: group_distributions(table, column) for column in FOCUS_COLUMNS}


def cam_overlay(image8: np.ndarray, cam: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A (S, S, 3) BGR picture: the CAM, scaled to its own maximum, in the JET colour map
    over the grey (S, S) image, with the brain mask's outline in white."""
    peak = float(cam.max())
    heat = cv2.applyColorMap(np.uint8(np.clip(cam / peak if peak > 0 else cam, 0, 1) * 255),
                             cv2.COLORMAP_JET)
    grey = cv2.cvtColor(image8, cv2.COLOR_GRAY2BGR)
    picture = cv2.addWeighted(heat, OVERLAY_WEIGHT, grey, 1 - OVERLAY_WEIGHT, 0)
    return outline_mask(picture, mask, (255, 255, 255))


def write_case(folder: Path, original: np.ndarray | None, image8: np.ndarray,
               cams: dict[str, np.ndarray], mask: np.ndarray, metadata: dict[str, Any]) -> None:
    """One case: original.png, input.png, cam_<name>.png per CAM, and metadata.json."""
    folder.mkdir(parents=True, exist_ok=True)
    pictures = {"input": image8, **{f"cam_{name}": cam_overlay(image8, cam, mask)
                                    for name, cam in cams.items()}}
    if original is not None:
        pictures["original"] = original
    for name, picture in pictures.items():
        if not cv2.imwrite(str(folder / f"{name}.png"), picture):
            raise OSError(f"could not write {folder / name}.png")
    write_json(folder / "metadata.json", {**metadata, "files": sorted(
        f"{name}.png" for name in pictures)})


def case_folder_name(row: pd.Series) -> str:
    return f"{row['kind']}-{int(row['rank']):02d}-{row['id']}"


def write_cases(folder: Path, cases: pd.DataFrame, images: np.ndarray, manifest: pd.DataFrame,
                cams: dict[str, np.ndarray], masks: np.ndarray, originals: Path,
                qc: pd.DataFrame, max_pixels: int, context: dict[str, Any]) -> None:
    """A folder per row of ``pick_cases`` (indexed like ``images``), under ``folder``.

    ``originals`` is the folder the manifest's ``path`` is relative to; ``qc`` is indexed by
    image id and holds its QC decision and reasons."""
    for index, case in cases.iterrows():
        source = manifest.iloc[index]
        write_case(folder / case_folder_name(case),
                   grey_picture(originals / source["path"], max_pixels), images[index],
                   {name: cam[index] for name, cam in cams.items()}, masks[index],
                   {**context, "case": case.to_dict(), "preprocessing": source.to_dict(),
                    "qc": qc.loc[source["id"]].to_dict() if source["id"] in qc.index else {}})
