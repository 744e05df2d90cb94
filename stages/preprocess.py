"""preprocess: every image through the one preprocess(), Nyul landmarks fitted on train."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from stages._run import run_stage
from tumorscreen.data.manifest import count_by
from tumorscreen.data.split import TRAIN
from tumorscreen.imaging.batch import preprocess_dataset
from tumorscreen.imaging.preprocess import PreprocessConfig, step_seconds
from tumorscreen.parallel import resolve_workers
from tumorscreen.records import provenance, sha256_file, write_json
from tumorscreen.report.panel import panel_cases, render_preprocess_panel

RAW_DIR = Path("data/raw")
SPLITS = Path("data/split/splits.csv")
OUT_DIR = Path("data/preprocessed")
LANDMARKS = Path("models/nyul_landmarks.json")
METRICS = Path("metrics/preprocess.json")
PANEL = Path("plots/preprocess_panel.html")


def preprocess(params: dict) -> None:
    cfg = PreprocessConfig.from_params(params["preprocess"])
    max_pixels, workers = params["qc"]["limits"]["max_pixels"], params["preprocess"]["workers"]
    start = time.perf_counter()
    run = preprocess_dataset(pd.read_csv(SPLITS, keep_default_na=False), RAW_DIR, OUT_DIR,
                             cfg, max_pixels, workers)
    wall = time.perf_counter() - start
    write_json(LANDMARKS, {**run.state.to_json(), "fitted_on_split": TRAIN})
    run.seconds.to_csv(OUT_DIR / "timings.csv", index=False)
    PANEL.parent.mkdir(parents=True, exist_ok=True)
    PANEL.write_text(render_preprocess_panel(panel_cases(
        run.table, RAW_DIR, run.state, cfg, max_pixels,
        params["preprocess"]["panel_per_label"])))
    table = run.table
    rule = table["preprocess_reason"].str.split(":").str[0].replace("", "none")
    write_json(METRICS, {
        "images": len(table),
        "decisions": count_by(table, "preprocess_decision"),
        "by_split": count_by(table, "split", "preprocess_decision"),
        "by_reason": count_by(table.assign(rule=rule), "preprocess_decision", "rule"),
        "nyul_fitted_on": run.state.fitted_on,
        "seconds": {"wall": round(wall, 2), "workers": resolve_workers(workers),
                    "per_step": step_seconds(run.seconds.drop(columns="id"))},
        "provenance": provenance(split_sha256=sha256_file(SPLITS),
                                 landmarks_sha256=sha256_file(LANDMARKS)),
    })


if __name__ == "__main__":
    run_stage("preprocess", preprocess)
