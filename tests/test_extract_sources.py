import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from tumorscreen.data import sources
from tumorscreen.data.extract import ExtractLimits, safe_extract
from tumorscreen.errors import TumorScreenError

LIMITS = ExtractLimits(max_members=100, max_total_bytes=50_000_000, max_ratio=100)


def make_zip(path: Path, members: dict[str, bytes], symlink: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)  # S_IFLNK
            zf.writestr(info, "/etc/passwd")
    return path


def test_good_zip_extracts_every_member(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", {"yes/a.jpg": b"1", "no/b.jpg": b"22"})
    written = safe_extract(archive, tmp_path / "out", LIMITS)
    assert sorted(written) == ["no/b.jpg", "yes/a.jpg"]
    assert (tmp_path / "out" / "no" / "b.jpg").read_bytes() == b"22"


@pytest.mark.parametrize(("members", "symlink", "reason"), [
    ({"../evil.txt": b"x"}, "", "path traversal"),
    ({"ok/../../evil.txt": b"x"}, "", "path traversal"),
    ({"/etc/evil.txt": b"x"}, "", "absolute path"),
    ({"C:/evil.txt": b"x"}, "", "absolute path"),
    ({"a.jpg": b"x"}, "link.jpg", "symlink"),
    ({"bomb.bin": bytes(20_000_000)}, "", "decompression bomb"),
    ({f"{i}.jpg": b"x" for i in range(101)}, "", "members > limit"),
])
def test_malicious_zip_is_refused_whole(tmp_path, members, symlink, reason):
    archive = make_zip(tmp_path / "bad.zip", members, symlink)
    with pytest.raises(TumorScreenError, match=reason):
        safe_extract(archive, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_archive_over_the_size_limit_is_refused(tmp_path):
    archive = make_zip(tmp_path / "big.zip", {"a.bin": bytes(600), "b.bin": bytes(600)})
    small = ExtractLimits(max_members=10, max_total_bytes=1000, max_ratio=1e9)
    with pytest.raises(TumorScreenError, match="expands to 1200 bytes"):
        safe_extract(archive, tmp_path / "out", small)


def test_tar_with_link_or_traversal_is_refused(tmp_path):
    for name, kind in (("../x", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        archive = tmp_path / f"bad{kind!r}.tar"
        with tarfile.open(archive, "w") as tf:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, "/etc/passwd", 0
            tf.addfile(info, io.BytesIO(b""))
        with pytest.raises(TumorScreenError, match="archive refused"):
            safe_extract(archive, tmp_path / f"out{kind!r}", LIMITS)


def test_corrupt_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(TumorScreenError, match="not a zip or tar"):
        safe_extract(bad, tmp_path / "out", LIMITS)


def test_local_source_verifies_the_checksum(tmp_path):
    archive = make_zip(tmp_path / "d.zip", {"yes/a.jpg": b"1"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root, record = sources.fetch_local(str(archive), digest, tmp_path / "s1", LIMITS)
    assert (root / "yes" / "a.jpg").exists()
    assert record["sha256"] == digest and record["sha256_verified"]
    with pytest.raises(TumorScreenError, match="does not match"):
        sources.fetch_local(str(archive), "0" * 64, tmp_path / "s2", LIMITS)
    with pytest.raises(TumorScreenError, match="not found"):
        sources.fetch_local(str(tmp_path / "missing.zip"), "", tmp_path / "s3", LIMITS)


def test_local_folder_is_read_in_place(tmp_path):
    (tmp_path / "ds" / "no").mkdir(parents=True)
    root, record = sources.fetch_local(str(tmp_path / "ds"), "", tmp_path / "s", LIMITS)
    assert root == tmp_path / "ds" and record["kind"] == "folder"


def test_url_source_needs_https_and_a_checksum(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "d.zip", {"no/a.jpg": b"1"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(TumorScreenError, match="needs a sha256"):
        sources.fetch_url("https://example.org/d.zip", "", tmp_path / "s0", LIMITS)
    with pytest.raises(TumorScreenError, match="must be https"):
        sources.download_url("http://example.org/d.zip", tmp_path / "x", 10)
    monkeypatch.setattr(sources, "download_url",
                        lambda url, target, max_bytes: target.write_bytes(archive.read_bytes()))
    root, record = sources.fetch_url("https://example.org/d.zip", digest, tmp_path / "s1", LIMITS)
    assert (root / "no" / "a.jpg").exists() and record["sha256_verified"]
    with pytest.raises(TumorScreenError, match="does not match"):
        sources.fetch_url("https://example.org/d.zip", "f" * 64, tmp_path / "s2", LIMITS)


def test_kaggle_source_uses_kagglehub(tmp_path, monkeypatch):
    import kagglehub

    calls = []
    monkeypatch.setattr(kagglehub, "dataset_download", lambda h: calls.append(h) or str(tmp_path))
    root, record = sources.fetch_dataset("kaggle", {"kaggle": "owner/data"}, tmp_path / "s",
                                         LIMITS)
    assert calls == ["owner/data"] and root == tmp_path
    assert record["location"] == "kaggle:owner/data"

    def offline(handle):
        raise ConnectionError("no network")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(TumorScreenError, match="could not be fetched: no network"):
        sources.fetch_kaggle("owner/data")


def test_unknown_source_is_named(tmp_path):
    with pytest.raises(TumorScreenError, match="unknown data source 'ftp'"):
        sources.fetch_dataset("ftp", {}, tmp_path, LIMITS)
