"""Safe archive extraction: refuses traversal, absolute paths, links and bombs, whole.

A hostile archive is refused before anything is written, with the offending member named;
partial extraction would silently lose files, so there is none.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tumorscreen.errors import TumorScreenError


@dataclass(frozen=True)
class ExtractLimits:
    max_members: int
    max_total_bytes: int  # sum of uncompressed sizes
    max_ratio: float  # uncompressed / compressed, per member


def _member_problem(name: str) -> str:
    """Why a member name is unsafe, or "" when it is a plain relative path."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if "\\" in name:
        return "backslash in path"
    if ".." in PurePosixPath(name).parts:
        return "path traversal ('..')"
    return ""


def _check(name: str, size: int, compressed: int, limits: ExtractLimits) -> None:
    problem = _member_problem(name)
    if problem:
        raise TumorScreenError(f"archive refused: member '{name}': {problem}")
    if compressed > 0 and size / compressed > limits.max_ratio and size > 1 << 20:
        raise TumorScreenError(
            f"archive refused: member '{name}' expands {size / compressed:.0f}x "
            f"(limit {limits.max_ratio:.0f}x): likely a decompression bomb")


def _check_totals(count: int, total: int, limits: ExtractLimits) -> None:
    if count > limits.max_members:
        raise TumorScreenError(f"archive refused: {count} members > limit {limits.max_members}")
    if total > limits.max_total_bytes:
        raise TumorScreenError(
            f"archive refused: expands to {total} bytes > limit {limits.max_total_bytes}")


def _extract_zip(archive: Path, dest: Path, limits: ExtractLimits) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        for m in members:
            if stat.S_ISLNK(m.external_attr >> 16):
                raise TumorScreenError(f"archive refused: member '{m.filename}' is a symlink")
            _check(m.filename, m.file_size, m.compress_size, limits)
        _check_totals(len(members), sum(m.file_size for m in members), limits)
        for m in members:
            target = dest / m.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as source, target.open("wb") as sink:
                # Declared sizes can lie: copy at most one byte more than declared, then check.
                sink.write(source.read(m.file_size + 1))
            if target.stat().st_size != m.file_size:
                raise TumorScreenError(f"archive refused: member '{m.filename}' size mismatch")
        return [m.filename for m in members]


def _extract_tar(archive: Path, dest: Path, limits: ExtractLimits) -> list[str]:
    compressed = max(archive.stat().st_size, 1)
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            if m.issym() or m.islnk() or not (m.isfile() or m.isdir()):
                raise TumorScreenError(f"archive refused: member '{m.name}' is a link or device")
            _check(m.name, 0, 0, limits)
        files = [m for m in members if m.isfile()]
        total = sum(m.size for m in files)
        _check_totals(len(files), total, limits)
        if total / compressed > limits.max_ratio and total > 1 << 20:
            raise TumorScreenError(f"archive refused: expands {total / compressed:.0f}x "
                                   f"(limit {limits.max_ratio:.0f}x)")
        tf.extractall(dest, members=files, filter="data")
        return [m.name for m in files]


def safe_extract(archive: str | Path, dest: str | Path, limits: ExtractLimits) -> list[str]:
    """Extract a zip or tar archive into ``dest``; returns the member file paths written.

    Raises :class:`TumorScreenError` (and leaves ``dest`` absent) for unsafe archives.
    """
    archive, dest = Path(archive), Path(dest)
    if zipfile.is_zipfile(archive):
        extractor = _extract_zip
    elif tarfile.is_tarfile(archive):
        extractor = _extract_tar
    else:
        raise TumorScreenError(f"{archive}: not a zip or tar archive")
    dest.mkdir(parents=True, exist_ok=False)
    try:
        return extractor(archive, dest, limits)
    except (TumorScreenError, zipfile.BadZipFile, tarfile.TarError, OSError) as error:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(error, TumorScreenError):
            raise
        raise TumorScreenError(f"{archive}: corrupt archive: {error}") from error
