"""Preprocess a whole split table over a process pool, into one directory per split.

Workers write images into row-addressed scratch arrays instead of returning them, so
nothing large travels through pipes and the parent stays idle while they work.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from tumorscreen.data.split import ALL_SPLITS, TRAIN
from tumorscreen.data.store import Scratch, write_split
from tumorscreen.imaging.preprocess import (
    Prepared,
    PreprocessConfig,
    PreprocessState,
    finish,
    fit_state,
    metadata_record,
    prepare_file,
    rejected,
)
from tumorscreen.imaging.qc import REJECT
from tumorscreen.parallel import parallel_map


@dataclass(frozen=True)
class DatasetRun:
    table: pd.DataFrame  # the split rows plus METADATA_COLUMNS, in input order
    state: PreprocessState  # Nyul landmarks fitted on the train rows
    seconds: pd.DataFrame  # one row per image, one column per step


def scratch_parent(needed: int, shared_memory: Path = Path("/dev/shm")) -> Path | None:
    """RAM-backed /dev/shm when it has twice the room, else the default temp folder (None):
    scratch on disk costs page writeback that competes with the workers for the cores."""
    if shared_memory.is_dir() and shutil.disk_usage(shared_memory).free > 2 * needed:
        return shared_memory
    return None


def _prepare_row(item: tuple[int, dict], raw_dir: Path, cfg: PreprocessConfig,
                 max_pixels: int, scratch: Scratch) -> dict:
    index, row = item
    if row["qc_decision"] == REJECT:
        prepared = rejected(cfg, "qc_reject")
    else:
        prepared = prepare_file(raw_dir / row["path"], cfg, max_pixels)
    scratch.array("prepared")[index], scratch.array("mask")[index] = prepared.image, prepared.mask
    return prepared.metadata


def _prepared(scratch: Scratch, index: int, metadata: dict) -> Prepared:
    return Prepared(scratch.array("prepared")[index], scratch.array("mask")[index], metadata)


def _finish_row(item: tuple[int, dict], state: PreprocessState, cfg: PreprocessConfig,
                scratch: Scratch) -> dict:
    image, metadata = finish(_prepared(scratch, *item), state, cfg)
    scratch.array("output")[item[0]] = image
    return {key: value for key, value in metadata.items() if key != "mask"}


def preprocess_dataset(
    rows: pd.DataFrame, raw_dir: Path, out_dir: Path, cfg: PreprocessConfig, max_pixels: int,
    workers: int,
) -> DatasetRun:
    """Run every row of ``rows`` (``data/split/splits.csv``) through preprocess(), with the
    Nyul landmarks fitted on the rows whose split is train, and write ``out_dir/<split>/``.

    QC rejects are not decoded: they become rejected rows with zeros. ``workers`` processes
    (0 = all cores) run both halves, prepare() and finish().
    """
    with tempfile.TemporaryDirectory(prefix="tumorscreen-preprocess-",
                                     dir=scratch_parent(Scratch.bytes_needed(len(rows), cfg.size))
                                     ) as folder:
        scratch = Scratch(Path(folder), len(rows), cfg.size).create()
        prepare_one = partial(_prepare_row, raw_dir=raw_dir, cfg=cfg, max_pixels=max_pixels,
                              scratch=scratch)
        prepared = parallel_map(prepare_one, list(enumerate(rows.to_dict("records"))),
                                workers, "preprocess")
        train = [_prepared(scratch, i, m) for i, m in enumerate(prepared)
                 if rows["split"].iat[i] == TRAIN]
        state = fit_state(train, cfg)
        finish_one = partial(_finish_row, state=state, cfg=cfg, scratch=scratch)
        finished = parallel_map(finish_one, list(enumerate(prepared)), workers, "standardise")
        table = pd.concat([rows.reset_index(drop=True),
                           pd.DataFrame([metadata_record(m) for m in finished])], axis=1)
        for split in ALL_SPLITS:
            chosen = (table["split"] == split).to_numpy().nonzero()[0]
            write_split(out_dir / split, scratch.array("output")[chosen],
                        scratch.array("mask")[chosen], table.iloc[chosen])
    seconds = pd.DataFrame([m["seconds"] for m in finished]).assign(id=table["id"])
    return DatasetRun(table, state, seconds)
