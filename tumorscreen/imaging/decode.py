"""Decode any supported image file to float grayscale, and read headers without decoding.

Pillow identifies the true format from the bytes, so a PNG named ``.jpg`` is seen as PNG.
Every failure becomes an :class:`ImageDecodeError` whose message is a one-line reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

FORMAT_EXTENSIONS = {
    "JPEG": frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
    "PNG": frozenset({".png"}),
    "BMP": frozenset({".bmp"}),
    "TIFF": frozenset({".tif", ".tiff"}),
    "GIF": frozenset({".gif"}),
    "WEBP": frozenset({".webp"}),
}
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1] to uint8, rounded."""
    return np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8)


class ImageDecodeError(Exception):
    """The file cannot be used as an image; the message says why, in one line."""


@dataclass(frozen=True)
class ImageHeader:
    format: str  # true format from the bytes, "" when unknown
    width: int  # 0 when unknown
    height: int
    mode: str
    error: str  # "" when the header was read


def extension_matches(fmt: str, path: str | Path) -> bool:
    """Whether a file's extension is one of the usual ones for its true format."""
    return Path(path).suffix.lower() in FORMAT_EXTENSIONS.get(fmt, frozenset())


def read_header(path: str | Path) -> ImageHeader:
    """Format, size and mode from the header only (no pixel decoding)."""
    path = Path(path)
    if path.stat().st_size == 0:
        return ImageHeader("", 0, 0, "", "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return ImageHeader(image.format or "", image.width, image.height, image.mode, "")
    except Image.DecompressionBombError as error:
        return ImageHeader("", 0, 0, "", f"decompression bomb guard: {error}")
    except UnidentifiedImageError:
        return ImageHeader("", 0, 0, "", "not an image (format not recognised)")
    except OSError as error:
        return ImageHeader("", 0, 0, "", f"unreadable header: {error}")


@dataclass(frozen=True)
class DecodedImage:
    gray: np.ndarray  # (H, W) float32 in [0, 1]
    rgb: np.ndarray | None  # (H, W, 3) float32 in [0, 1] for colour sources, else None
    alpha: np.ndarray | None  # (H, W) float32 in [0, 1] when the source has transparency
    mode: str  # the source's Pillow mode
    bit_depth: int  # bits per sample of the source
    has_exif: bool


def _high_bit_gray(image: Image.Image) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    return ((values - low) / max(high - low, 1.0)).astype(np.float32)


def decode_image(path: str | Path, max_pixels: int) -> DecodedImage:
    """Decode a file fully to float grayscale in [0, 1], keeping colour and alpha for QC.

    16-bit and float sources are rescaled by their own range; palette, CMYK and RGBA are
    converted. Raises :class:`ImageDecodeError` for empty, unknown, truncated or oversized files.
    """
    header = read_header(path)
    if header.error:
        raise ImageDecodeError(header.error)
    if header.width * header.height > max_pixels:
        raise ImageDecodeError(f"too large to decode: {header.width}x{header.height} pixels")
    try:
        with Image.open(path) as image:
            image.load()
            mode, has_exif = image.mode, len(image.getexif()) > 0
            alpha = None
            if mode in HIGH_BIT_MODES:
                return DecodedImage(_high_bit_gray(image), None, None, mode,
                                    32 if mode in {"I", "F"} else 16, has_exif)
            if mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            if image.mode in {"RGBA", "LA", "PA"}:
                alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
            if image.mode in {"L", "LA", "1"}:
                gray, rgb = image.convert("L"), None
            else:
                colour = image.convert("RGB")
                gray, rgb = colour.convert("L"), np.asarray(colour, dtype=np.float32) / 255.0
            gray_array = np.asarray(gray, dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(str(error) or type(error).__name__) from error
    return DecodedImage(gray_array, rgb, alpha, mode, 1 if mode == "1" else 8, has_exif)
