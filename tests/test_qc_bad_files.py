"""Every kind of bad file yields one row with a decision and a clear reason, never a crash."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorscreen.data.manifest import ingest_dataset
from tumorscreen.errors import TumorScreenError
from tumorscreen.imaging.qc import check_actions, qc_image


def head_image(size=128, rgb=False) -> Image.Image:
    y, x = np.mgrid[:size, :size]
    head = ((x - size / 2) ** 2 / 0.16 + (y - size / 2) ** 2 / 0.2) < (size / 2) ** 2
    pixels = np.where(head, 120 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0), 3).astype(np.uint8)
    image = Image.fromarray(pixels)
    return image.convert("RGB") if rgb else image


def write_cases(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}

    def save(name, image, **kw):
        cases[name] = folder / name
        image.save(cases[name], **kw)

    save("good.jpg", head_image(), format="JPEG", quality=95)
    full = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (folder / "corrupt.jpg").write_bytes(full[:20] + bytes(range(256)) * 8)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("a text file, not an image\n")
    save("png_named.jpg", head_image(), format="PNG")
    deep = (np.asarray(head_image(), dtype=np.uint16) * 257)
    save("sixteen.png", Image.fromarray(deep))
    save("cmyk.jpg", head_image(rgb=True).convert("CMYK"), format="JPEG")
    rgba = head_image(rgb=True).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.full((128, 128), 128, np.uint8)))
    save("rgba.png", rgba)
    save("palette.png", head_image(rgb=True).convert("P"))
    tinted = np.asarray(head_image(rgb=True)).copy()
    tinted[..., 0] = np.clip(tinted[..., 0].astype(int) + 60, 0, 255)
    save("tinted.png", Image.fromarray(tinted))
    save("huge.png", Image.new("1", (20000, 20000)))  # 400 Mpx, a few KB on disk
    save("wide.png", Image.new("L", (9000, 5000), 40))  # 45 Mpx > max_pixels, not a bomb
    save("tiny.png", head_image(32))
    save("blank.png", Image.new("L", (128, 128), 0))
    return cases


@pytest.fixture(scope="module")
def qc_rows(tmp_path_factory, project_params):
    root = tmp_path_factory.mktemp("bad")
    write_cases(root / "Training" / "glioma")
    raw = tmp_path_factory.mktemp("raw")
    rows = ingest_dataset("internal", root, raw)
    check_actions(project_params["qc"]["actions"])
    return {Path(r["original_path"]).name: {**r, **qc_image(r, raw / r["path"],
                                                              project_params["qc"])}
            for r in rows}


@pytest.mark.parametrize(("name", "decision", "rule", "words"), [
    ("good.jpg", "pass", "", ""),
    ("truncated.jpg", "reject", "undecodable", "truncated"),
    ("corrupt.jpg", "reject", "undecodable", ""),
    ("zero.jpg", "reject", "undecodable", "empty file"),
    ("notes.jpg", "reject", "undecodable", "not an image"),
    ("png_named.jpg", "flag", "format_mismatch", "PNG content behind '.jpg'"),
    ("sixteen.png", "flag", "unusual_mode", "I;16"),
    ("cmyk.jpg", "flag", "unusual_mode", "CMYK"),
    ("rgba.png", "flag", "unusual_mode", "RGBA"),
    ("palette.png", "flag", "unusual_mode", "mode P"),
    ("tinted.png", "flag", "colour_tint", "channel difference"),
    ("huge.png", "reject", "undecodable", "decompression bomb"),
    ("wide.png", "reject", "too_large", "9000x5000"),
    ("tiny.png", "reject", "too_small", "32x32"),
    ("blank.png", "reject", "blank", "std"),
])
def test_bad_file_gets_one_clear_reason(qc_rows, name, decision, rule, words):
    row = qc_rows[name]
    assert row["qc_decision"] == decision, row["qc_reason"]
    assert row["qc_reason"].startswith(rule)
    assert words in row["qc_reason"]
    assert "\n" not in row["qc_reason"]


def test_every_finding_is_kept_and_nothing_is_dropped(qc_rows):
    assert len(qc_rows) == 15
    assert "high_bit_depth" in qc_rows["sixteen.png"]["qc_findings"].split(";")
    assert "transparency" in qc_rows["rgba.png"]["qc_findings"].split(";")
    assert qc_rows["sixteen.png"]["bit_depth"] == 16


def test_bad_qc_actions_are_a_clear_error(project_params):
    actions = {**project_params["qc"]["actions"], "blank": "discard"}
    del actions["exif"]
    with pytest.raises(TumorScreenError, match=r"missing rules \['exif'\].*\['blank'\]"):
        check_actions(actions)


def test_symlinks_get_a_row_but_are_not_followed(tmp_path):
    (tmp_path / "ds" / "no").mkdir(parents=True)
    (tmp_path / "ds" / "no" / "link.jpg").symlink_to("/etc/hostname")
    rows = ingest_dataset("external", tmp_path / "ds", tmp_path / "raw")
    assert [r["header_error"] for r in rows] == ["symbolic link: not followed"]
    assert not (tmp_path / "raw" / rows[0]["path"]).exists()
