"""qc: measure every raw image and decide pass / flag / reject, one row in, one row out."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from stages._run import run_stage
from tumorscreen.data.manifest import count_by, read_manifest
from tumorscreen.errors import TumorScreenError
from tumorscreen.imaging.qc import check_actions, qc_image
from tumorscreen.parallel import parallel_map
from tumorscreen.records import provenance, sha256_file, write_json
from tumorscreen.report.gallery import render_qc_gallery

RAW_DIR = Path("data/raw")
OUT_DIR = Path("data/qc")
METRICS = Path("metrics/qc.json")
GALLERY = Path("plots/qc_gallery.html")


def _qc_row(row: dict, qc_params: dict) -> dict:
    return qc_image(row, RAW_DIR / row["path"], qc_params)


def qc(params: dict) -> None:
    cfg = params["qc"]
    check_actions(cfg["actions"])
    manifest = read_manifest(RAW_DIR / "manifest.csv")
    results = parallel_map(partial(_qc_row, qc_params=cfg), manifest.to_dict("records"),
                           cfg["workers"], desc="qc")
    checked = pd.concat([manifest, pd.DataFrame(results, index=manifest.index)], axis=1)
    if len(checked) != len(manifest):
        raise TumorScreenError(f"qc lost rows: {len(manifest)} in, {len(checked)} out")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    checked.to_csv(OUT_DIR / "manifest.csv", index=False)
    GALLERY.parent.mkdir(parents=True, exist_ok=True)
    GALLERY.write_text(render_qc_gallery(checked, RAW_DIR, cfg["limits"]["max_pixels"],
                                         cfg["gallery_max_per_rule"]))
    rule = checked["qc_reason"].str.split(":").str[0].replace("", "none")
    write_json(METRICS, {
        "images": len(checked),
        "decisions": count_by(checked, "qc_decision"),
        "by_dataset": count_by(checked, "dataset", "qc_decision"),
        "by_dataset_label": count_by(checked, "dataset", "label", "qc_decision"),
        "by_reason": count_by(checked.assign(rule=rule), "qc_decision", "rule"),
        "by_dataset_reason": count_by(checked.assign(rule=rule), "dataset", "rule"),
        "provenance": provenance(raw_manifest_sha256=sha256_file(RAW_DIR / "manifest.csv"),
                                 qc_manifest_sha256=sha256_file(OUT_DIR / "manifest.csv")),
    })


if __name__ == "__main__":
    run_stage("qc", qc)
