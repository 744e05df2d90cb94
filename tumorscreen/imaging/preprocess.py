"""The one preprocess(): the pipeline's stage and inference both call it.

Steps, each switched by ``preprocess.<step>.enabled`` for ablations:
float grayscale -> head/brain mask -> SimpleITK N4 inside the mask -> crop to the head ->
fit into the square model input (pad, never stretch) -> Nyul-Udupa standardisation with
landmarks fitted on the train split -> CLAHE -> uint8.

It is split in two at the one point that needs fitted state: :func:`prepare` (everything
before Nyul) and :func:`finish`, so the stage can fit the landmarks on prepared train images
without running N4 twice. ``preprocess() == finish(prepare())``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tumorscreen.errors import TumorScreenError
from tumorscreen.imaging.contrast import clahe
from tumorscreen.imaging.decode import ImageDecodeError, decode_image, to_uint8
from tumorscreen.imaging.geometry import fit_square, mask_box
from tumorscreen.imaging.mask import brain_mask, mask_shape
from tumorscreen.imaging.n4 import n4_correct
from tumorscreen.imaging.nyul import apply_standardisation, fit_standard_landmarks, image_landmarks
from tumorscreen.imaging.qc import FLAG, PASS, REJECT, Finding, check_actions, decide

MASK_RULES = frozenset({"empty_mask", "small_mask", "large_mask", "border_contact",
                        "low_solidity"})
STEPS = ("mask", "n4", "crop", "nyul", "clahe")
METADATA_COLUMNS = (
    "preprocess_decision", "preprocess_reason", "height", "width", "mask_fraction",
    "mask_border_contact", "mask_solidity", "n4_shrink", "n4_log_bias_min", "n4_log_bias_max",
    "crop_y0", "crop_y1", "crop_x0", "crop_x1", "scale", "nyul_landmarks",
)


@dataclass(frozen=True)
class PreprocessConfig:
    """The ``preprocess`` params, checked once."""

    size: int
    enabled: dict[str, bool]
    rim_erosion: float
    zero_background: bool
    mask_limits: dict[str, float]
    mask_actions: dict[str, str]
    n4_shrink: int
    n4_max_fit_side: int
    n4_iterations: tuple[int, ...]  # one entry per fitting level
    n4_convergence: float
    crop_margin: float
    percentiles: tuple[float, ...]
    nyul_scale: tuple[float, float]
    clahe_clip: float
    clahe_tiles: int

    @classmethod
    def from_params(cls, cfg: dict[str, Any]) -> PreprocessConfig:
        try:
            mask, n4, nyul = cfg["mask"], cfg["n4"], cfg["nyul"]
            config = cls(
                size=int(cfg["size"]),
                enabled={step: bool(cfg[step]["enabled"]) for step in STEPS},
                rim_erosion=float(mask["rim_erosion"]),
                zero_background=bool(mask["zero_background"]),
                mask_limits={k: float(v) for k, v in mask["limits"].items()},
                mask_actions=dict(mask["actions"]),
                n4_shrink=int(n4["shrink"]),
                n4_max_fit_side=int(n4["max_fit_side"]),
                n4_iterations=(int(n4["iterations"]),) * int(n4["levels"]),
                n4_convergence=float(n4["convergence"]),
                crop_margin=float(cfg["crop"]["margin"]),
                percentiles=tuple(float(p) for p in nyul["percentiles"]),
                nyul_scale=(float(nyul["scale"][0]), float(nyul["scale"][1])),
                clahe_clip=float(cfg["clahe"]["clip"]),
                clahe_tiles=int(cfg["clahe"]["tiles"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise TumorScreenError(f"preprocess params: missing or malformed {error}") from None
        config.check()
        return config

    def check(self) -> None:
        check_actions(self.mask_actions, MASK_RULES, "preprocess.mask.actions")
        limits = {"min_fraction", "max_fraction", "max_border_contact", "min_solidity"}
        problems = [
            f"mask.limits needs {sorted(limits)}" if set(self.mask_limits) != limits else "",
            "size must be >= 16" if self.size < 16 else "",
            "n4.shrink must be >= 1" if self.n4_shrink < 1 else "",
            "n4.levels and n4.iterations must be >= 1" if not self.n4_iterations
            or min(self.n4_iterations) < 1 else "",
            "nyul.percentiles must be >= 3, increasing, inside (0, 100)"
            if len(self.percentiles) < 3 or np.any(np.diff(self.percentiles) <= 0)
            or not 0 < self.percentiles[0] < self.percentiles[-1] < 100 else "",
            "nyul.scale must be increasing in [0, 1]"
            if not 0 <= self.nyul_scale[0] < self.nyul_scale[1] <= 1 else "",
            "clahe.clip must be > 0 and clahe.tiles >= 1"
            if self.clahe_clip <= 0 or self.clahe_tiles < 1 else "",
        ]
        problems = [p for p in problems if p]
        if problems:
            raise TumorScreenError("preprocess params: " + "; ".join(problems))


@dataclass(frozen=True)
class PreprocessState:
    """What preprocessing learns from the train split: Nyul's standard landmarks."""

    percentiles: tuple[float, ...]
    standard: tuple[float, ...] | None  # None when Nyul is off
    fitted_on: int  # number of train images

    def to_json(self) -> dict[str, Any]:
        return {"percentiles": list(self.percentiles), "fitted_on": self.fitted_on,
                "standard_landmarks": None if self.standard is None else list(self.standard)}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> PreprocessState:
        standard = payload["standard_landmarks"]
        return cls(tuple(payload["percentiles"]),
                   None if standard is None else tuple(standard), int(payload["fitted_on"]))


@dataclass
class Prepared:
    """An image after the stateless steps, at the model's geometry."""

    image: np.ndarray  # (size, size) float32, bias-corrected, cropped and padded
    mask: np.ndarray  # (size, size) bool, the head/brain mask on the same grid
    metadata: dict[str, Any]
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # only when traced

    @property
    def rejected(self) -> bool:
        return self.metadata["preprocess_decision"] == REJECT


def to_float_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) array of any integer or [0, 1] float dtype -> (H, W) float32."""
    source = np.asarray(image)
    values = source
    if values.ndim == 3:
        values = values[..., :3] @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale or 3-D colour image, got {values.shape}")
    if np.issubdtype(source.dtype, np.integer):
        values = values / float(np.iinfo(source.dtype).max)
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def mask_findings(shape: dict[str, float], limits: dict[str, float]) -> list[Finding]:
    """The mask rules a :func:`mask_shape` result breaks."""
    if shape["fraction"] == 0:
        return [Finding("empty_mask", "no head found")]
    found = []
    if shape["fraction"] < limits["min_fraction"]:
        found.append(Finding("small_mask", f"mask covers {shape['fraction']:.2f} of the frame "
                             f"< {limits['min_fraction']}"))
    if shape["fraction"] > limits["max_fraction"]:
        found.append(Finding("large_mask", f"mask covers {shape['fraction']:.2f} of the frame "
                             f"> {limits['max_fraction']}"))
    if shape["border_contact"] > limits["max_border_contact"]:
        found.append(Finding("border_contact", f"mask touches {shape['border_contact']:.2f} of "
                             f"the frame edge > {limits['max_border_contact']}"))
    if shape["solidity"] < limits["min_solidity"]:
        found.append(Finding("low_solidity", f"mask solidity {shape['solidity']:.2f} < "
                             f"{limits['min_solidity']}"))
    return found


def _lap(seconds: dict[str, float], step: str, start: float) -> float:
    now = time.perf_counter()
    seconds[step] = now - start
    return now


def prepare(image: np.ndarray, cfg: PreprocessConfig, trace: bool = False) -> Prepared:
    """Mask, N4, crop and fit to ``cfg.size``: the steps that need no fitted state.

    ``image`` is (H, W) grayscale or (H, W, 3) colour, any integer dtype or float in [0, 1].
    With ``trace``, ``steps`` keeps each intermediate image for the before/after panel.
    """
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    gray = to_float_gray(image)
    if cfg.enabled["mask"]:
        mask = brain_mask(to_uint8(gray), cfg.rim_erosion)
        shape = mask_shape(mask)
        decision, reason = decide(mask_findings(shape, cfg.mask_limits), cfg.mask_actions)
    else:  # the whole frame, unchecked
        mask = np.ones(gray.shape, bool)
        shape, decision, reason = mask_shape(mask), PASS, ""
    metadata: dict[str, Any] = {
        "height": gray.shape[0], "width": gray.shape[1],
        "mask_fraction": shape["fraction"], "mask_border_contact": shape["border_contact"],
        "mask_solidity": shape["solidity"],
        "preprocess_decision": decision, "preprocess_reason": reason,
        "n4_log_bias_min": np.nan, "n4_log_bias_max": np.nan,
    }
    start = _lap(seconds, "mask", start)
    steps = {"input": gray, "mask": mask} if trace else {}
    if decision == REJECT:
        return rejected(cfg, reason, metadata, seconds)
    if decision == FLAG:  # an implausible mask is not trusted to crop or blank anything
        mask = np.ones(gray.shape, bool)
    corrected = gray
    if cfg.enabled["n4"]:
        result = n4_correct(gray, mask, cfg.n4_shrink, list(cfg.n4_iterations),
                            cfg.n4_convergence, cfg.n4_max_fit_side)
        corrected = result.corrected
        metadata["n4_shrink"] = result.shrink
        metadata["n4_log_bias_min"] = float(result.log_bias[mask].min())
        metadata["n4_log_bias_max"] = float(result.log_bias[mask].max())
        if trace:
            steps.update(log_bias=result.log_bias, n4=corrected)
    start = _lap(seconds, "n4", start)
    y0, y1, x0, x1 = (mask_box(mask, cfg.crop_margin) if cfg.enabled["crop"]
                      else (0, gray.shape[0], 0, gray.shape[1]))
    fitted, scale = fit_square(corrected[y0:y1, x0:x1], cfg.size)
    fitted_mask, _ = fit_square(mask[y0:y1, x0:x1], cfg.size, nearest=True)
    metadata.update(crop_y0=y0, crop_y1=y1, crop_x0=x0, crop_x1=x1, scale=scale)
    start = _lap(seconds, "resize", start)
    if cfg.enabled["nyul"]:  # the image's own landmarks, here so pool workers compute them
        metadata["nyul_landmarks"] = image_landmarks(fitted[fitted_mask], cfg.percentiles)
    _lap(seconds, "landmarks", start)
    metadata["seconds"] = seconds
    if trace:
        steps["fitted"] = fitted
    return Prepared(fitted.astype(np.float32), fitted_mask, metadata, steps)


def rejected(
    cfg: PreprocessConfig, reason: str, metadata: dict[str, Any] | None = None,
    seconds: dict[str, float] | None = None,
) -> Prepared:
    """A rejected image: zeros at the model's geometry, with the reason."""
    metadata = {**(metadata or {}), "preprocess_decision": REJECT,
                "preprocess_reason": reason, "seconds": dict(seconds or {})}
    size = cfg.size
    return Prepared(np.zeros((size, size), np.float32), np.zeros((size, size), bool), metadata)


def prepare_file(
    path: str | Path, cfg: PreprocessConfig, max_pixels: int, trace: bool = False
) -> Prepared:
    """:func:`prepare` of an image file; an undecodable file becomes a rejected image."""
    start = time.perf_counter()
    try:
        gray = decode_image(path, max_pixels).gray
    except (ImageDecodeError, OSError) as error:
        return rejected(cfg, f"undecodable: {error}")
    decode_seconds = time.perf_counter() - start
    prepared = prepare(gray, cfg, trace)
    prepared.metadata["seconds"]["decode"] = decode_seconds
    return prepared


def fit_state(prepared: Iterable[Prepared], cfg: PreprocessConfig) -> PreprocessState:
    """Nyul's standard landmarks from the given prepared images: pass train images only.

    Rejected images are skipped; ``fitted_on`` counts the images used.
    """
    usable = [p for p in prepared if not p.rejected and p.mask.any()]
    if not cfg.enabled["nyul"]:
        return PreprocessState(cfg.percentiles, None, len(usable))
    if not usable:
        raise TumorScreenError("Nyul: no usable train image to fit the landmarks on")
    landmarks = np.stack([p.metadata["nyul_landmarks"] for p in usable])
    standard = fit_standard_landmarks(landmarks, cfg.nyul_scale)
    return PreprocessState(cfg.percentiles, tuple(float(v) for v in standard), len(usable))


def finish(
    prepared: Prepared, state: PreprocessState, cfg: PreprocessConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Nyul, CLAHE and the uint8 model input, (size, size), from a :func:`prepare` result.

    The metadata gains the image's own landmarks, step timings and ``mask`` (the head mask on
    the model's grid, for the focus score); ``steps`` too when the preparation was traced.
    """
    seconds = dict(prepared.metadata["seconds"])
    metadata = {"nyul_landmarks": [], **prepared.metadata, "mask": prepared.mask}
    if prepared.rejected:
        return np.zeros_like(prepared.mask, np.uint8), {**metadata, "seconds": seconds}
    if tuple(state.percentiles) != cfg.percentiles:
        raise TumorScreenError("Nyul landmarks were fitted with other percentiles; refit them")
    start = time.perf_counter()
    image, mask = prepared.image, prepared.mask
    if cfg.enabled["nyul"]:
        if state.standard is None:
            raise TumorScreenError("Nyul is enabled but the fitted state has no landmarks")
        image = apply_standardisation(image, mask, np.asarray(state.standard), cfg.percentiles,
                                      own=np.asarray(metadata["nyul_landmarks"]))
    else:  # no standardisation: the in-mask maximum maps to 1
        image = image / max(float(image[mask].max()), 1e-6)
    if cfg.zero_background and cfg.enabled["mask"]:
        image = np.where(mask, image, 0.0)
    start = _lap(seconds, "nyul", start)
    out = to_uint8(np.clip(image, 0.0, 1.0))
    if cfg.enabled["clahe"]:
        out = clahe(out, cfg.clahe_clip, cfg.clahe_tiles)
        if cfg.zero_background and cfg.enabled["mask"]:
            out[~mask] = 0  # CLAHE lifts flat black tiles
    _lap(seconds, "clahe", start)
    if prepared.steps:
        metadata["steps"] = {**prepared.steps, "nyul": image, "output": out}
    return out, {**metadata, "seconds": seconds}


def preprocess(
    image: np.ndarray, state: PreprocessState, cfg: PreprocessConfig, trace: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """The model input for one image: (size, size) uint8 in [0, 255], and its metadata.

    ``image`` is (H, W) grayscale or (H, W, 3) colour, any integer dtype or float in [0, 1];
    ``state`` comes from :func:`fit_state` on the train split (``models/nyul_landmarks.json``).
    A rejected image (empty or implausible mask, by ``preprocess.mask.actions``) gives zeros
    and says why in ``metadata["preprocess_reason"]``.
    """
    return finish(prepare(image, cfg, trace), state, cfg)


def metadata_record(metadata: dict[str, Any]) -> dict[str, Any]:
    """The CSV row of a :func:`preprocess` metadata: METADATA_COLUMNS, NaN where a step did
    not run; the image's own Nyul landmarks joined by ';'."""
    record = {column: metadata.get(column, np.nan) for column in METADATA_COLUMNS}
    record["nyul_landmarks"] = ";".join(f"{v:.5f}" for v in metadata.get("nyul_landmarks", []))
    return record


def step_seconds(seconds: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per step, total seconds and mean milliseconds per image that ran it; ``seconds`` has
    one row per image and one column per step (NaN where the step did not run)."""
    return {step: {"total": round(float(column.sum()), 3),
                   "mean_ms": round(float(column.mean()) * 1000, 3)}
            for step, column in seconds.items() if column.notna().any()}
