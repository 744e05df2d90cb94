"""The embedded default: deterministic brain-MRI phantoms in the real datasets' layouts.

Two "sites" are generated: the internal 4-class set (``Training|Testing/<class>``) and a
shifted external binary set (``yes|no``). Known faults and near-duplicates are injected and
written to a ground-truth file, so QC, dedup and N4 can be scored against the truth.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tumorscreen.data.layout import EXTERNAL, INTERNAL, INTERNAL_CLASSES, INTERNAL_FOLDERS

GROUND_TRUTH_FILE = "ground_truth.json"
TUMOR_CLASSES = ("glioma", "meningioma", "pituitary")


@dataclass(frozen=True)
class Site:
    """Acquisition style of one site: contrast, bias, noise, geometry and burnt-in text."""

    gamma: tuple[float, float]
    bias_strength: float
    noise_sigma: tuple[float, float]
    side: tuple[int, int]  # min/max of the shorter side, in pixels
    aspect: tuple[float, float]  # width / height
    burnt_in_text: bool


INTERNAL_SITE = Site(gamma=(0.85, 1.2), bias_strength=0.25, noise_sigma=(0.015, 0.03),
                     side=(0, 0), aspect=(1.0, 1.0), burnt_in_text=False)
EXTERNAL_SITE = Site(gamma=(1.3, 1.8), bias_strength=0.5, noise_sigma=(0.03, 0.05),
                     side=(0, 0), aspect=(0.8, 1.25), burnt_in_text=True)


def normalised_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) coordinates, (H, W) each, with the shorter side spanning [-1, 1]; y points down."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    half = min(height, width) / 2.0
    return (xs - (width - 1) / 2.0) / half, (ys - (height - 1) / 2.0) / half


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation, shape (H, W)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma_px)
    return noise / max(float(noise.std()), 1e-6)


def _ellipse_radius(x, y, cx, cy, ax, ay, angle):
    cos, sin = np.cos(angle), np.sin(angle)
    u = (x - cx) * cos + (y - cy) * sin
    v = -(x - cx) * sin + (y - cy) * cos
    return np.sqrt((u / ax) ** 2 + (v / ay) ** 2)


def render_head(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, dict]:
    """Noise-free axial head: scalp, skull ring, textured brain and ventricles, (H, W) in [0, 1].

    Returns the image and the head geometry used to place lesions.
    """
    x, y = normalised_grid(height, width)
    geo = {"cx": rng.uniform(-0.08, 0.08), "cy": rng.uniform(-0.06, 0.06),
           "ax": rng.uniform(0.6, 0.78), "ay": rng.uniform(0.76, 0.92),
           "angle": rng.uniform(-0.25, 0.25)}
    phi = np.arctan2(y - geo["cy"], x - geo["cx"])
    wobble = 1 + 0.03 * np.sin(rng.integers(2, 5) * phi + rng.uniform(0, 2 * np.pi))
    r = _ellipse_radius(x, y, geo["cx"], geo["cy"], geo["ax"], geo["ay"], geo["angle"]) * wobble
    image = np.zeros((height, width), np.float32)
    image[(r >= 0.93) & (r < 1.0)] = 0.85  # scalp fat, bright on T1
    image[(r >= 0.87) & (r < 0.93)] = 0.08  # skull bone, dark
    brain = r < 0.87
    fine = smooth_noise(rng, (height, width), max(1.0, min(height, width) / 90))
    coarse = smooth_noise(rng, (height, width), max(2.0, min(height, width) / 25))
    white = (r + 0.15 * coarse) < rng.uniform(0.55, 0.68)
    tissue = np.where(white, 0.66, 0.46) + 0.08 * fine + 0.05 * coarse
    image[brain] = tissue[brain]
    for side in (-1, 1):  # paired lateral ventricles, CSF dark on T1
        ventricle = _ellipse_radius(x, y, geo["cx"] + side * 0.09 * geo["ax"], geo["cy"] - 0.04,
                                    rng.uniform(0.04, 0.07), rng.uniform(0.14, 0.2),
                                    geo["angle"] + side * rng.uniform(0.2, 0.4))
        image[ventricle < 1] = 0.12
    return np.clip(image, 0, 1), geo


def add_lesion(rng: np.random.Generator, image: np.ndarray, geo: dict, label: str) -> np.ndarray:
    """Paint the class-dependent lesion onto a head image (a copy; 'notumor' adds none)."""
    if label == "notumor":
        return image.copy()
    height, width = image.shape
    x, y = normalised_grid(height, width)
    out = image.copy()
    if label == "glioma":  # irregular intra-axial mass: necrotic core, enhancing rim, oedema
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.5)
        cx = geo["cx"] + dist * geo["ax"] * np.cos(angle)
        cy = geo["cy"] + dist * geo["ay"] * np.sin(angle)
        radius = rng.uniform(0.12, 0.2)
        phi = np.arctan2(y - cy, x - cx)
        edge = radius * (1 + sum(rng.uniform(0.05, 0.15) * np.sin(k * phi + rng.uniform(0, 6))
                                 for k in (2, 3, 5)))
        rho = np.hypot(x - cx, y - cy) / edge
        out[rho < 1.7] *= 0.82
        out[rho < 1.0] = 0.8
        out[rho < 0.55] = 0.25
    elif label == "meningioma":  # round extra-axial mass abutting the inner skull
        angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.12, 0.18)
        reach = 0.87 - radius / min(geo["ax"], geo["ay"])
        cx = geo["cx"] + reach * geo["ax"] * np.cos(angle)
        cy = geo["cy"] + reach * geo["ay"] * np.sin(angle)
        rho = np.hypot(x - cx, y - cy) / radius
        head = _ellipse_radius(x, y, geo["cx"], geo["cy"], geo["ax"], geo["ay"], geo["angle"])
        out[(rho < 1.0) & (head < 0.87)] = 0.86
    elif label == "pituitary":  # small midline mass, inferior
        cx = geo["cx"] + rng.uniform(-0.03, 0.03)
        cy = geo["cy"] + rng.uniform(0.3, 0.42) * geo["ay"]
        rho = np.hypot(x - cx, (y - cy) * 1.2) / rng.uniform(0.06, 0.1)
        out[rho < 1.0] = 0.82
    else:
        raise ValueError(f"unknown phantom label: {label}")
    return out


def bias_field(rng: np.random.Generator, height: int, width: int, strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(b), (H, W); b is a random quadratic, max|b| = strength."""
    x, y = normalised_grid(height, width)
    terms = np.stack([x, y, x * y, x**2 - 0.5, y**2 - 0.5])
    log_bias = np.tensordot(rng.standard_normal(len(terms)), terms, axes=1)
    log_bias *= strength / max(float(np.abs(log_bias).max()), 1e-6)
    return np.exp(log_bias).astype(np.float32)


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise: the noise model of MR magnitude data."""
    real = image + sigma * rng.standard_normal(image.shape)
    imag = sigma * rng.standard_normal(image.shape)
    return np.sqrt(real**2 + imag**2).astype(np.float32)


def burn_in_text(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Scanner-style annotations in the corners, drawn in full white, on a uint8 image copy."""
    out = image.copy()
    height, width = out.shape
    scale = min(height, width) / 420
    thickness = max(1, round(scale * 2))
    texts = [f"SE {rng.integers(1, 20)}", f"IM {rng.integers(1, 40)}", "R", "L"]
    spots = [(3, int(18 * scale) + 3), (3, height - 4), (width - int(30 * scale) - 3, height // 2),
             (width - int(90 * scale) - 3, int(18 * scale) + 3)]
    for text, spot in zip(texts, spots, strict=True):
        cv2.putText(out, text, spot, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    return out


def scale_to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a non-negative float image so its 99.8th percentile maps to 250, clip, uint8."""
    top = max(float(np.percentile(image, 99.8)), 1e-6)
    return np.clip(image * (250.0 / top), 0, 255).round().astype(np.uint8)


def render_phantom(
    rng: np.random.Generator, label: str, height: int, width: int, site: Site
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom acquisition: (uint8 image (H, W), the multiplicative bias field (H, W))."""
    head, geo = render_head(rng, height, width)
    anatomy = add_lesion(rng, head, geo, label) ** rng.uniform(*site.gamma)
    field = bias_field(rng, height, width, site.bias_strength)
    noisy = rician_noise(rng, anatomy * field, rng.uniform(*site.noise_sigma))
    image = scale_to_uint8(noisy)
    if site.burnt_in_text:
        image = burn_in_text(rng, image)
    return image, field


def encode(image: np.ndarray, fmt: str, quality: int = 92, rgb: bool = False) -> bytes:
    """Encode a uint8 grayscale image as JPEG or PNG bytes, optionally as 3-channel RGB."""
    pil = Image.fromarray(image)
    if rgb:
        pil = pil.convert("RGB")
    buffer = io.BytesIO()
    if fmt == "JPEG":
        pil.save(buffer, "JPEG", quality=quality)
    else:
        pil.save(buffer, fmt)
    return buffer.getvalue()


EXTENSION_FORMAT = {"jpg": "JPEG", "JPG": "JPEG", "jpeg": "JPEG", "png": "PNG"}


def _count(rate: float, population: int) -> int:
    """Injected count for a rate: at least one of each kind, so every fault is exercised."""
    return max(1, round(rate * population))


class _Writer:
    """Writes files under the synthetic root and records each one in the ground truth."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, dict[str, Any]] = {}
        self.arrays: dict[str, np.ndarray] = {}

    def write(self, rel: str, payload: bytes, **truth: Any) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        self.files[rel] = {"phantom": None, "fault": None, "duplicate_of": None,
                           "duplicate_kind": None, "label_conflict": False, "benign": None,
                           **truth}
        return rel


def _external_shape(rng: np.random.Generator, cfg: dict) -> tuple[int, int]:
    side = int(rng.integers(cfg["external_side"][0], cfg["external_side"][1] + 1))
    aspect = rng.uniform(*EXTERNAL_SITE.aspect)
    return (side, round(side * aspect)) if aspect >= 1 else (round(side / aspect), side)


def _near_duplicate(rng: np.random.Generator, image: np.ndarray, kind: str) -> np.ndarray:
    if kind == "mirror":
        return np.ascontiguousarray(image[:, ::-1])
    if kind == "contrast":
        gamma = rng.choice([rng.uniform(0.7, 0.85), rng.uniform(1.2, 1.4)])
        return np.clip(255.0 * (image / 255.0) ** gamma, 0, 255).round().astype(np.uint8)
    return image


def generate_synthetic(root: str | Path, cfg: dict) -> dict[str, Any]:
    """Write both synthetic datasets under ``root/{internal,external}`` and the ground truth.

    ``cfg`` holds the ``synthetic`` params (seed, sizes and injection rates). Same seed and
    params give byte-identical files. Returns the ground truth, also written to
    ``root/ground_truth.json``.
    """
    rng = np.random.default_rng(cfg["seed"])
    writer = _Writer(Path(root))
    size, rates = cfg["internal_size"], cfg["rates"]
    originals: list[tuple[str, np.ndarray, str, str]] = []  # rel path, image, folder, class
    phantom = 0
    for folder in INTERNAL_FOLDERS:
        for label in INTERNAL_CLASSES:
            for _ in range(cfg["internal_per_class"][folder]):
                image, _field = render_phantom(rng, label, size, size, INTERNAL_SITE)
                rel = f"{INTERNAL}/{folder}/{label}/syn{phantom:05d}.jpg"
                writer.write(rel, encode(image, "JPEG", rgb=rng.random() < 0.2), phantom=phantom)
                originals.append((rel, image, folder, label))
                phantom += 1
    for label in ("no", "yes"):
        for _ in range(cfg["external_per_label"]):
            height, width = _external_shape(rng, cfg)
            lesion = "notumor" if label == "no" else str(rng.choice(TUMOR_CLASSES))
            image, _field = render_phantom(rng, lesion, height, width, EXTERNAL_SITE)
            ext = str(rng.choice(list(EXTENSION_FORMAT)))
            rel = f"{EXTERNAL}/{label}/ext{phantom:05d}.{ext}"
            writer.write(rel, encode(image, EXTENSION_FORMAT[ext]), phantom=phantom)
            phantom += 1

    # Near-duplicates inside the internal set, within and across its Training/Testing folders.
    picks = rng.permutation(len(originals))
    n_dup = _count(rates["near_duplicate"], len(originals))
    kinds, folders = ("exact", "mirror", "contrast"), ("same", "other")
    for k, index in enumerate(picks[:n_dup]):
        rel, image, folder, label = originals[index]
        kind, where = kinds[k % 3], folders[(k // 3) % 2]
        target = folder if where == "same" else INTERNAL_FOLDERS[1 - INTERNAL_FOLDERS.index(folder)]
        payload = (writer.root / rel).read_bytes() if kind == "exact" else encode(
            _near_duplicate(rng, image, kind), "JPEG", quality=85)
        writer.write(f"{INTERNAL}/{target}/{label}/dup{k:04d}_{kind}.jpg", payload,
                     phantom=writer.files[rel]["phantom"], duplicate_of=rel, duplicate_kind=kind)

    # Cross-dataset twins: internal phantoms re-acquired by the external site (as in real data).
    n_twin = _count(rates["cross_dataset_duplicate"], 2 * cfg["external_per_label"])
    for k, index in enumerate(picks[n_dup:n_dup + n_twin]):
        rel, image, _folder, label = originals[index]
        height, width = _external_shape(rng, cfg)
        twin = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        twin = burn_in_text(rng, _near_duplicate(rng, twin, "contrast"))
        target = "no" if label == "notumor" else "yes"
        writer.write(f"{EXTERNAL}/{target}/twin{k:04d}.jpg", encode(twin, "JPEG"),
                     phantom=writer.files[rel]["phantom"], duplicate_of=rel,
                     duplicate_kind="cross_dataset")

    # Label conflicts: an exact copy filed under another class.
    n_conflict = _count(rates["label_conflict"], len(originals))
    for k, index in enumerate(picks[n_dup + n_twin:n_dup + n_twin + n_conflict]):
        rel, _image, folder, label = originals[index]
        wrong = INTERNAL_CLASSES[(INTERNAL_CLASSES.index(label) + 1) % len(INTERNAL_CLASSES)]
        writer.write(f"{INTERNAL}/{folder}/{wrong}/conflict{k:04d}.jpg",
                     (writer.root / rel).read_bytes(), phantom=writer.files[rel]["phantom"],
                     duplicate_of=rel, duplicate_kind="exact", label_conflict=True)
        writer.files[rel]["label_conflict"] = True

    _inject_faults(rng, writer, cfg, len(writer.files), next_phantom=phantom)
    truth = summarise_truth(writer.files)
    (writer.root / GROUND_TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True))
    return truth


FAULT_KINDS = ("blank", "collapsed", "truncated", "wrong_extension")
ERROR_PAGE = b"<!DOCTYPE html><html><body><h1>403 Forbidden</h1></body></html>\n"


def _inject_faults(rng: np.random.Generator, writer: _Writer, cfg: dict, population: int,
                   next_phantom: int) -> None:
    """Add unusable files at known rates, spread over both datasets' folders."""
    size = cfg["internal_size"]
    for kind in FAULT_KINDS:
        for k in range(_count(cfg["rates"][kind], population)):
            if k % 2 == 0:
                folder = f"{INTERNAL}/{rng.choice(INTERNAL_FOLDERS)}/{rng.choice(INTERNAL_CLASSES)}"
            else:
                folder = f"{EXTERNAL}/{rng.choice(['no', 'yes'])}"
            image, _field = render_phantom(rng, "notumor", size, size, INTERNAL_SITE)
            if kind == "blank":
                payload, ext = encode(np.zeros_like(image), "JPEG"), "jpg"
            elif kind == "collapsed":  # all the signal squeezed into a couple of grey levels
                payload, ext = encode((100 + image // 64).astype(np.uint8), "PNG"), "png"
            elif kind == "truncated":
                full = encode(image, "JPEG")
                payload, ext = full[: len(full) // 2], "jpg"
            else:  # what a failed download leaves behind an image name
                payload, ext = ERROR_PAGE, "jpg"
            writer.write(f"{folder}/fault_{kind}{k:03d}.{ext}", payload, fault=kind)
    # A usable PNG behind a .jpg name, as in real exports: to be flagged, not rejected.
    image, _field = render_phantom(rng, "notumor", size, size, INTERNAL_SITE)
    writer.write(f"{INTERNAL}/Training/notumor/png_named_jpg.jpg", encode(image, "PNG"),
                 phantom=next_phantom, benign="format_mismatch")


def summarise_truth(files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ground truth: per-file records, fault lists, and near-duplicate groups by phantom."""
    by_phantom: dict[int, list[str]] = {}
    for rel, record in files.items():
        if record["phantom"] is not None and record["fault"] is None:
            by_phantom.setdefault(record["phantom"], []).append(rel)
    return {
        "files": files,
        "faults": {kind: sorted(r for r, rec in files.items() if rec["fault"] == kind)
                   for kind in FAULT_KINDS},
        "duplicate_groups": sorted(sorted(g) for g in by_phantom.values() if len(g) > 1),
        "benign": {rel: rec["benign"] for rel, rec in files.items() if rec["benign"]},
        "label_conflicts": sorted(sorted(g) for g in by_phantom.values()
                                  if any(files[r]["label_conflict"] for r in g)),
    }
