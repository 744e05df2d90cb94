"""Self-contained HTML gallery of images with their QC reasons (thumbnails inlined)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from tumorscreen.imaging.decode import ImageDecodeError, decode_image, to_uint8

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2rem}
.grid{display:flex;flex-wrap:wrap;gap:.6rem}
.card{width:170px;font-size:11px;border:1px solid #ddd;border-radius:4px;padding:4px}
.card img,.card .none{width:160px;height:160px;object-fit:contain;background:#000}
.card .none{display:flex;align-items:center;justify-content:center;color:#eee}
.reason{color:#a00}.flag .reason{color:#a60}
"""


MIME = {".png": "image/png", ".jpg": "image/jpeg"}


def image_data_uri(image8: np.ndarray, side: int = 160, ext: str = ".png") -> str:
    """A data URI of a (H, W) or (H, W, 3) BGR uint8 image scaled to fit ``side`` pixels,
    encoded as ``ext`` (.png, or .jpg for colour pictures where size matters)."""
    scale = side / max(image8.shape[:2])
    size = (max(1, round(image8.shape[1] * scale)), max(1, round(image8.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    ok, encoded = cv2.imencode(ext, cv2.resize(image8, size, interpolation=interpolation))
    if not ok:
        return ""
    return f"data:{MIME[ext]};base64," + base64.b64encode(np.asarray(encoded).tobytes()).decode()


def grey_picture(path: Path, max_pixels: int) -> np.ndarray | None:
    """A source file as (H, W) 8-bit grey, or None when it cannot be decoded."""
    try:
        return to_uint8(decode_image(path, max_pixels).gray)
    except (ImageDecodeError, OSError):
        return None


def outline_mask(picture: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int],
                 thickness: int = 1) -> np.ndarray:
    """Draw the outer outline of the (H, W) bool ``mask`` on the BGR picture, in place."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(picture, contours, -1, colour, thickness)


def thumbnail_uri(path: Path, max_pixels: int, side: int = 160) -> str:
    """A PNG data URI of the image scaled to fit ``side`` pixels, or "" when undecodable."""
    gray = grey_picture(path, max_pixels)
    return "" if gray is None else image_data_uri(gray, side)


def _card(row: pd.Series, raw_dir: Path, max_pixels: int) -> str:
    uri = thumbnail_uri(raw_dir / row["path"], max_pixels)
    picture = f'<img src="{uri}" alt="">' if uri else '<div class="none">no preview</div>'
    where = html.escape(f"{row['dataset']}/{row['original_path']}")
    return (f'<div class="card {row["qc_decision"]}">{picture}<div>{where}</div>'
            f'<div class="reason">{html.escape(row["qc_reason"])}</div></div>')


def render_qc_gallery(qc_rows: pd.DataFrame, raw_dir: Path, max_pixels: int,
                      max_per_rule: int) -> str:
    """HTML page of rejected then flagged images, one section per rule, capped per rule."""
    sections = []
    for decision in ("reject", "flag"):
        chosen = qc_rows[qc_rows["qc_decision"] == decision]
        rules = chosen["qc_reason"].str.split(":").str[0]
        for rule, group in chosen.groupby(rules, sort=True):
            shown = group.head(max_per_rule)
            cards = "".join(_card(row, raw_dir, max_pixels) for _, row in shown.iterrows())
            more = len(group) - len(shown)
            note = f"<p>{more} more not shown; see data/qc/manifest.csv</p>" if more else ""
            sections.append(f"<h2>{decision}: {html.escape(rule)} ({len(group)})</h2>"
                            f'<div class="grid">{cards}</div>{note}')
    body = "".join(sections) or "<p>No image was rejected or flagged.</p>"
    counts = qc_rows["qc_decision"].value_counts().to_dict()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>TumorScreen QC gallery"
            f"</title><style>{STYLE}</style></head><body><h1>QC gallery</h1><p>{summary}</p>"
            f"{body}</body></html>")
