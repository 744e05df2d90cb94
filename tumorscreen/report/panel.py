"""Before/after panel of preprocessing: one row per image, one column per step."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from tumorscreen.imaging.decode import decode_image, to_uint8
from tumorscreen.imaging.preprocess import PreprocessConfig, PreprocessState, preprocess
from tumorscreen.imaging.qc import FLAG, REJECT
from tumorscreen.report.gallery import STYLE, image_data_uri, outline_mask

COLUMNS = (
    ("input", "input + mask"),
    ("log_bias", "N4 log-bias"),
    ("n4", "N4 corrected"),
    ("fitted", "cropped, padded"),
    ("nyul", "Nyul"),
    ("output", "CLAHE = model input"),
)


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return to_uint8((values - low) / (high - low) if high > low else values * 0.0)


def step_picture(step: str, steps: dict[str, np.ndarray]) -> np.ndarray | None:
    """The uint8 picture shown for one step (BGR for the overlays), or None if skipped."""
    if step not in steps:
        return None
    values = steps[step]
    if step == "input":
        picture = cv2.cvtColor(to_uint8(values), cv2.COLOR_GRAY2BGR)
        return outline_mask(picture, steps["mask"], (0, 0, 255), max(1, values.shape[0] // 150))
    if step == "log_bias":
        return cv2.applyColorMap(_stretch(values), cv2.COLORMAP_VIRIDIS)
    if values.dtype == np.uint8:
        return values
    return _stretch(values) if step == "n4" else to_uint8(np.clip(values, 0.0, 1.0))


def _caption(step: str, metadata: dict[str, Any]) -> str:
    if step == "input":
        return (f"{metadata['width']}x{metadata['height']}, mask "
                f"{metadata['mask_fraction']:.2f} of frame")
    if step == "log_bias":
        spread = metadata["n4_log_bias_max"] - metadata["n4_log_bias_min"]
        return f"bias max/min x{np.exp(spread):.2f}"
    return ""


def render_preprocess_panel(cases: list[tuple[str, dict[str, Any]]]) -> str:
    """Self-contained HTML: ``cases`` are (title, metadata of a traced preprocess())."""
    head = "".join(f"<th>{html.escape(name)}</th>" for _, name in COLUMNS)
    rows = []
    for title, metadata in cases:
        cells = []
        for step, _name in COLUMNS:
            picture = step_picture(step, metadata.get("steps", {}))
            image = (f'<img src="{image_data_uri(picture)}" alt="">' if picture is not None
                     else '<div class="none">step off</div>')
            cells.append(f"<td>{image}<div>{html.escape(_caption(step, metadata))}</div></td>")
        reason = metadata["preprocess_reason"] or metadata["preprocess_decision"]
        rows.append(f"<tr><th>{html.escape(title)}<div class='reason'>{html.escape(reason)}"
                    f"</div></th>{''.join(cells)}</tr>")
    table_style = ("td,th{font-size:11px;vertical-align:top;padding:3px}"
                   "td img,td .none{width:160px;height:160px;object-fit:contain;"
                   "background:#000;color:#eee;display:flex;align-items:center;"
                   "justify-content:center}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>TumorScreen "
            f"preprocessing</title><style>{STYLE}{table_style}</style></head><body>"
            f"<h1>Preprocessing, before and after</h1><table><tr><th></th>{head}</tr>"
            f"{''.join(rows)}</table></body></html>")


def panel_cases(
    table: pd.DataFrame, raw_dir: Path, state: PreprocessState, cfg: PreprocessConfig,
    max_pixels: int, per_label: int,
) -> list[tuple[str, dict[str, Any]]]:
    """Traced preprocess() runs of the first ``per_label`` kept images of every label (by id,
    so the choice is stable), then as many flagged images."""
    kept = table[table["preprocess_decision"] != REJECT].sort_values("id")
    chosen = [group.head(per_label) for _, group in kept.groupby(["dataset", "label"])]
    chosen.append(kept[kept["preprocess_decision"] == FLAG].head(per_label))
    cases = []
    for row in pd.concat(chosen).itertuples():
        gray = decode_image(raw_dir / row.path, max_pixels).gray
        _, metadata = preprocess(gray, state, cfg, trace=True)
        cases.append((f"{row.label} ({row.dataset}, {row.split}) {row.id}", metadata))
    return cases
