"""Where the two datasets come from: synthetic, local (zip or folder), kaggle, url.

Each fetcher leaves one dataset as a plain folder tree and returns a record of what it read
(location and archive checksum), which the download stage writes next to the manifest.
"""

from __future__ import annotations

import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from tumorscreen.data.extract import ExtractLimits, safe_extract
from tumorscreen.errors import TumorScreenError
from tumorscreen.records import sha256_file

SOURCES = ("synthetic", "local", "kaggle", "url")


def verify_checksum(path: Path, expected: str) -> str:
    """sha256 of ``path``; raises when ``expected`` is given and differs."""
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        raise TumorScreenError(f"{path}: sha256 {actual} does not match the expected {expected}")
    return actual


def fetch_local(location: str, expected_sha256: str, staging: Path,
                limits: ExtractLimits) -> tuple[Path, dict[str, Any]]:
    """A local archive (verified, then safely extracted) or a local folder (read in place)."""
    path = Path(location).expanduser()
    if path.is_dir():
        return path, {"location": str(path), "kind": "folder"}
    if not path.is_file():
        raise TumorScreenError(f"local dataset not found: {path}")
    digest = verify_checksum(path, expected_sha256)
    safe_extract(path, staging, limits)
    return staging, {"location": str(path), "kind": "archive", "sha256": digest,
                     "sha256_verified": bool(expected_sha256)}


def fetch_kaggle(handle: str) -> tuple[Path, dict[str, Any]]:
    """A public Kaggle dataset through kagglehub (its own cache; no login for public data)."""
    import kagglehub  # imported here: it is only needed for this source

    try:
        path = Path(kagglehub.dataset_download(handle))
    except Exception as error:  # kagglehub raises many types; the reason is what matters
        reason = f"kaggle dataset '{handle}' could not be fetched: {error}"
        raise TumorScreenError(reason) from error
    return path, {"location": f"kaggle:{handle}", "kind": "folder"}


def download_url(url: str, target: Path, max_bytes: int) -> None:
    """Stream an https URL to ``target``, refusing bodies larger than ``max_bytes``."""
    if not url.startswith("https://"):
        raise TumorScreenError(f"url source must be https: {url}")
    written = 0
    with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as sink:
        while chunk := response.read(1 << 20):
            written += len(chunk)
            if written > max_bytes:
                raise TumorScreenError(f"{url}: larger than {max_bytes} bytes")
            sink.write(chunk)


def fetch_url(url: str, expected_sha256: str, staging: Path,
              limits: ExtractLimits) -> tuple[Path, dict[str, Any]]:
    """An https archive whose sha256 must be given and must match before extraction."""
    if not expected_sha256:
        raise TumorScreenError(f"url source needs a sha256 for {url}")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        try:
            download_url(url, archive, limits.max_total_bytes)
        except OSError as error:
            raise TumorScreenError(f"{url}: download failed: {error}") from error
        digest = verify_checksum(archive, expected_sha256)
        safe_extract(archive, staging, limits)
    return staging, {"location": url, "kind": "archive", "sha256": digest,
                     "sha256_verified": True}


def fetch_dataset(source: str, spec: dict[str, str], staging: Path,
                  limits: ExtractLimits) -> tuple[Path, dict[str, Any]]:
    """Fetch one dataset described by ``spec`` (keys local, kaggle, url, sha256)."""
    if source == "local":
        return fetch_local(spec["local"], spec["sha256"], staging, limits)
    if source == "kaggle":
        return fetch_kaggle(spec["kaggle"])
    if source == "url":
        return fetch_url(spec["url"], spec["sha256"], staging, limits)
    raise TumorScreenError(f"unknown data source '{source}' (one of {', '.join(SOURCES)})")
