"""Per-image quality measures and the pass / flag / reject decision with one reason.

Which rule leads to which action, and every limit, come from params (``qc.actions`` and
``qc.limits``), so a site can, say, downgrade a format mismatch from reject to flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tumorscreen.data.layout import UNKNOWN
from tumorscreen.errors import TumorScreenError
from tumorscreen.imaging.decode import (
    DecodedImage,
    ImageDecodeError,
    decode_image,
    extension_matches,
    to_uint8,
)
from tumorscreen.imaging.mask import head_mask

PASS, FLAG, REJECT = "pass", "flag", "reject"
SEVERITY = {PASS: 0, FLAG: 1, REJECT: 2}
MEASURE_COLUMNS = (
    "std", "dynamic_range", "grey_levels", "foreground_fraction", "border_brightness",
    "tint", "text_fraction", "bit_depth", "has_alpha", "has_exif",
)


def border_brightness(gray: np.ndarray, width_fraction: float = 0.05) -> float:
    """Mean intensity of the outer frame of the image, in [0, 1]."""
    height, width = gray.shape
    band = max(1, round(min(height, width) * width_fraction))
    frame = np.ones_like(gray, bool)
    frame[band:-band, band:-band] = False
    return float(gray[frame].mean())


def channel_tint(rgb: np.ndarray | None) -> float:
    """Mean absolute difference between colour channels, in [0, 1]; 0 for grayscale sources."""
    if rgb is None:
        return 0.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float((np.abs(r - g) + np.abs(g - b) + np.abs(b - r)).mean() / 3.0)


def text_fraction(gray8: np.ndarray, mask: np.ndarray, level: float) -> float:
    """Share of pixels that are bright but lie outside the (slightly dilated) head.

    Burnt-in annotations, rulers and frames live there; a clean slice has nearly none.
    """
    margin = max(1, round(min(gray8.shape) * 0.02))
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0
    bright = gray8 > max(level, 1.0) + 0.5 * (255 - max(level, 1.0))
    return float((bright & ~grown).mean())


def measure(decoded: DecodedImage) -> dict[str, float]:
    """QC measures of a decoded image (the keys are MEASURE_COLUMNS)."""
    gray8 = to_uint8(decoded.gray)
    mask, level = head_mask(gray8)
    low, high = np.percentile(gray8, [0.5, 99.5])
    return {
        "std": float(decoded.gray.std()),
        "dynamic_range": float(high - low),
        "grey_levels": int(np.unique(gray8).size),
        "foreground_fraction": float(mask.mean()),
        "border_brightness": border_brightness(decoded.gray),
        "tint": channel_tint(decoded.rgb),
        "text_fraction": text_fraction(gray8, mask, level),
        "bit_depth": decoded.bit_depth,
        "has_alpha": bool(decoded.alpha is not None and decoded.alpha.min() < 1.0),
        "has_exif": decoded.has_exif,
    }


@dataclass(frozen=True)
class Finding:
    rule: str
    detail: str


def header_findings(
    path: str | Path, label: str, fmt: str, width: int, height: int, mode: str, limits: dict
) -> list[Finding]:
    """Rules decided from the manifest row alone (label, format, size, aspect, mode)."""
    found = []
    if label == UNKNOWN:
        found.append(Finding("unlabelled", "no known label folder in the path"))
    if fmt and not extension_matches(fmt, path):
        found.append(Finding("format_mismatch", f"{fmt} content behind '{Path(path).suffix}'"))
    if width and height:
        if min(width, height) < limits["min_side"]:
            found.append(Finding("too_small", f"{width}x{height} < {limits['min_side']} px"))
        if width * height > limits["max_pixels"]:
            found.append(Finding("too_large", f"{width}x{height} > {limits['max_pixels']} px"))
        aspect = max(width, height) / min(width, height)
        if aspect > limits["max_aspect"]:
            found.append(Finding("extreme_aspect", f"aspect {aspect:.2f} > {limits['max_aspect']}"))
    if mode and mode not in {"L", "RGB"}:
        found.append(Finding("unusual_mode", f"mode {mode} converted to grayscale"))
    return found


def pixel_findings(m: dict[str, Any], limits: dict) -> list[Finding]:
    """Rules decided from the measures of the decoded pixels."""
    found = []
    if m["std"] < limits["blank_std"]:
        found.append(Finding("blank", f"intensity std {m['std']:.4f} < {limits['blank_std']}"))
    elif m["dynamic_range"] < limits["min_dynamic_range"]:
        found.append(Finding("collapsed", f"1-99% range {m['dynamic_range']:.0f} grey levels "
                             f"< {limits['min_dynamic_range']}"))
    if not limits["min_foreground"] <= m["foreground_fraction"] <= limits["max_foreground"]:
        found.append(Finding("foreground_fraction", f"head fraction {m['foreground_fraction']:.2f}"
                             f" outside [{limits['min_foreground']}, {limits['max_foreground']}]"))
    if m["border_brightness"] > limits["max_border_brightness"]:
        found.append(Finding("bright_background",
                             f"border mean {m['border_brightness']:.2f} > "
                             f"{limits['max_border_brightness']}"))
    if m["tint"] > limits["max_tint"]:
        found.append(Finding("colour_tint", f"channel difference {m['tint']:.3f} > "
                             f"{limits['max_tint']}"))
    if m["bit_depth"] > 8:
        found.append(Finding("high_bit_depth", f"{m['bit_depth']}-bit source rescaled to [0, 1]"))
    if m["has_alpha"]:
        found.append(Finding("transparency", "alpha channel with transparent pixels"))
    if m["text_fraction"] > limits["max_text_fraction"]:
        found.append(Finding("text_markers", f"bright pixels outside the head "
                             f"{m['text_fraction']:.4f} > {limits['max_text_fraction']}"))
    if m["has_exif"]:
        found.append(Finding("exif", "EXIF metadata present"))
    return found


def decide(findings: list[Finding], actions: dict[str, str]) -> tuple[str, str]:
    """The most severe action among the findings, and the first finding with that action."""
    decision, reason = PASS, ""
    for finding in findings:
        action = actions[finding.rule]
        if SEVERITY[action] > SEVERITY[decision]:
            decision, reason = action, f"{finding.rule}: {finding.detail}"
    return decision, reason


def qc_image(row: dict[str, Any], path: str | Path, qc_params: dict) -> dict[str, Any]:
    """QC one manifest row: measures, every finding, the decision and its one reason."""
    limits, actions = qc_params["limits"], qc_params["actions"]
    findings = header_findings(path, row["label"], row["format"], row["width"], row["height"],
                               row["mode"], limits)
    measures: dict[str, Any] = dict.fromkeys(MEASURE_COLUMNS)
    if row["header_error"]:
        findings.insert(0, Finding("undecodable", row["header_error"]))
    elif not any(f.rule == "too_large" for f in findings):
        try:
            measures.update(measure(decode_image(path, limits["max_pixels"])))
            findings += pixel_findings(measures, limits)
        except ImageDecodeError as error:
            findings.insert(0, Finding("undecodable", str(error)))
    decision, reason = decide(findings, actions)
    return {**measures, "qc_decision": decision, "qc_reason": reason,
            "qc_findings": ";".join(f.rule for f in findings)}


QC_RULES = frozenset({
    "unlabelled", "format_mismatch", "too_small", "too_large", "extreme_aspect", "unusual_mode",
    "undecodable", "blank", "collapsed", "foreground_fraction", "bright_background",
    "colour_tint", "high_bit_depth", "transparency", "text_markers", "exif",
})


def check_actions(
    actions: dict[str, str], rules: frozenset[str] = QC_RULES, section: str = "qc.actions"
) -> None:
    """Fail fast on an unknown action word or a rule without an action."""
    missing = sorted(rules - set(actions))
    bad = sorted(k for k, v in actions.items() if v not in SEVERITY)
    if missing or bad:
        raise TumorScreenError(f"{section}: missing rules {missing}, unknown actions for {bad}")
