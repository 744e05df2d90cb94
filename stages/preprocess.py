"""preprocess: every image through the one preprocess(), Nyul landmarks fitted on train."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import pandas as pd

from stages._run import run_stage
from tumorscreen.data.manifest import count_by
from tumorscreen.data.split import ALL_SPLITS, TRAIN
from tumorscreen.data.store import write_split
from tumorscreen.imaging.preprocess import (
    PreprocessConfig,
    finish,
    fit_state,
    metadata_record,
    prepare_file,
    rejected,
    step_seconds,
)
from tumorscreen.imaging.qc import REJECT
from tumorscreen.parallel import parallel_map, resolve_workers
from tumorscreen.records import provenance, sha256_file, write_json
from tumorscreen.report.panel import panel_cases, render_preprocess_panel

RAW_DIR = Path("data/raw")
SPLITS = Path("data/split/splits.csv")
OUT_DIR = Path("data/preprocessed")
LANDMARKS = Path("models/nyul_landmarks.json")
METRICS = Path("metrics/preprocess.json")
PANEL = Path("plots/preprocess_panel.html")


def _prepare_row(row: dict, cfg: PreprocessConfig, max_pixels: int):
    if row["qc_decision"] == REJECT:
        return rejected(cfg, "qc_reject")
    return prepare_file(RAW_DIR / row["path"], cfg, max_pixels)


def preprocess(params: dict) -> None:
    cfg = PreprocessConfig.from_params(params["preprocess"])
    max_pixels, workers = params["qc"]["limits"]["max_pixels"], params["preprocess"]["workers"]
    rows = pd.read_csv(SPLITS, keep_default_na=False)
    start = time.perf_counter()
    prepared = parallel_map(partial(_prepare_row, cfg=cfg, max_pixels=max_pixels),
                            rows.to_dict("records"), workers, desc="preprocess")
    train = [p for p, split in zip(prepared, rows["split"], strict=True) if split == TRAIN]
    state = fit_state(train, cfg)
    write_json(LANDMARKS, {**state.to_json(), "fitted_on_split": TRAIN})
    finished = parallel_map(partial(finish, state=state, cfg=cfg), prepared, workers,
                            desc="standardise")
    table = pd.concat([rows, pd.DataFrame([metadata_record(m) for _, m in finished])], axis=1)
    for split in ALL_SPLITS:
        chosen = (table["split"] == split).to_numpy().nonzero()[0]
        write_split(OUT_DIR / split, [finished[i][0] for i in chosen],
                    [finished[i][1]["mask"] for i in chosen], table.iloc[chosen], cfg.size)
    seconds = pd.DataFrame([m["seconds"] for _, m in finished]).assign(id=rows["id"])
    seconds.to_csv(OUT_DIR / "timings.csv", index=False)
    wall = time.perf_counter() - start
    PANEL.parent.mkdir(parents=True, exist_ok=True)
    PANEL.write_text(render_preprocess_panel(panel_cases(
        table, RAW_DIR, state, cfg, max_pixels, params["preprocess"]["panel_per_label"])))
    rule = table["preprocess_reason"].str.split(":").str[0].replace("", "none")
    write_json(METRICS, {
        "images": len(table),
        "decisions": count_by(table, "preprocess_decision"),
        "by_split": count_by(table, "split", "preprocess_decision"),
        "by_reason": count_by(table.assign(rule=rule), "preprocess_decision", "rule"),
        "nyul_fitted_on": state.fitted_on,
        "seconds": {"wall": round(wall, 2), "workers": resolve_workers(workers),
                    "per_step": step_seconds(seconds.drop(columns="id"))},
        "provenance": provenance(split_sha256=sha256_file(SPLITS),
                                 landmarks_sha256=sha256_file(LANDMARKS)),
    })


if __name__ == "__main__":
    run_stage("preprocess", preprocess)
