"""The preprocess stage in the tiny end-to-end repo: outputs, train-only fit, reruns."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import yaml

from tests.pipeline import copy_project, dvc, stage_error, stages_run, with_downstream
from tumorscreen.data.split import ALL_SPLITS, TRAIN
from tumorscreen.data.store import load_split
from tumorscreen.imaging.decode import decode_image
from tumorscreen.imaging.preprocess import (
    PreprocessConfig,
    PreprocessState,
    fit_state,
    prepare_file,
    preprocess,
)


def stage_inputs(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    cfg = PreprocessConfig.from_params(params["preprocess"])
    state = PreprocessState.from_json(json.loads((repo / "models/nyul_landmarks.json")
                                                 .read_text()))
    return cfg, state, params["qc"]["limits"]["max_pixels"]


def test_stage_output_equals_a_direct_preprocess_call(repo):
    cfg, state, max_pixels = stage_inputs(repo)
    checked = 0
    for split in ALL_SPLITS:
        arrays = load_split(repo / "data/preprocessed", split)
        for index in range(min(2, len(arrays.manifest))):
            row = arrays.manifest.iloc[index]
            if row["preprocess_decision"] == "reject":
                assert not arrays.images[index].any()
                continue
            gray = decode_image(repo / "data/raw" / row["path"], max_pixels).gray
            image, metadata = preprocess(gray, state, cfg)
            assert (image == arrays.images[index]).all(), (split, row["id"])
            assert (metadata["mask"] == arrays.masks[index]).all()
            checked += 1
    assert checked >= 10


def test_nyul_landmarks_are_fitted_on_the_train_split_only(repo):
    cfg, state, max_pixels = stage_inputs(repo)
    splits = pd.read_csv(repo / "data/split/splits.csv", keep_default_na=False)
    kept = splits[splits["qc_decision"] != "reject"]

    def fitted(rows: pd.DataFrame) -> PreprocessState:
        return fit_state([prepare_file(repo / "data/raw" / p, cfg, max_pixels)
                          for p in rows["path"]], cfg)

    on_train = fitted(kept[kept["split"] == TRAIN])
    assert on_train == state
    assert state.fitted_on == (kept["split"] == TRAIN).sum()
    assert fitted(kept).standard != state.standard  # the other splits would have moved it


def test_metrics_manifests_and_panel_account_for_every_image(repo):
    splits = pd.read_csv(repo / "data/split/splits.csv", keep_default_na=False)
    metrics = json.loads((repo / "metrics/preprocess.json").read_text())
    assert metrics["images"] == len(splits)
    assert sum(metrics["decisions"].values()) == len(splits)
    assert metrics["by_reason"]["reject"]["qc_reject"] == (splits["qc_decision"] == "reject").sum()
    assert {"decode", "mask", "n4", "resize", "landmarks", "nyul", "clahe"} <= set(
        metrics["seconds"]["per_step"])
    assert "landmarks_sha256" in metrics["provenance"]
    stored = pd.concat([load_split(repo / "data/preprocessed", s).manifest for s in ALL_SPLITS])
    assert sorted(stored["id"]) == sorted(splits["id"])
    timings = pd.read_csv(repo / "data/preprocessed/timings.csv")
    assert sorted(timings["id"]) == sorted(splits["id"])
    panel = (repo / "plots/preprocess_panel.html").read_text()
    assert panel.count("data:image/png;base64") >= 6 * 5
    for label in ("glioma", "meningioma", "notumor", "pituitary", "yes", "no"):
        assert f">{label} (" in panel


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_toggling_a_step_reruns_preprocess_and_downstream_only(repo):
    images = repo / "data/preprocessed/train/images.npy"
    before = digest(images)
    result = dvc(repo, "exp", "run", "-S", "preprocess.clahe.enabled=false")
    assert stages_run(result.stdout) == with_downstream("preprocess")
    assert digest(images) != before


def test_bad_preprocess_params_give_one_line_and_exit_1(tmp_path):
    root = copy_project(tmp_path, **{"preprocess.clahe.tiles": 0})
    line = stage_error(root, "preprocess")
    assert line.startswith("preprocess: preprocess params:") and "clahe" in line


@pytest.mark.parametrize("split", [TRAIN, "holdout"])
def test_split_arrays_line_up_with_their_manifest(repo, split):
    arrays = load_split(repo / "data/preprocessed", split)
    assert arrays.images.shape[0] == len(arrays.manifest) > 0
    assert arrays.images.dtype.name == "uint8" and arrays.masks.dtype.name == "bool"
    assert set(arrays.manifest["split"]) == {split}


def test_scratch_goes_to_shared_memory_only_when_it_has_room(tmp_path):
    from tumorscreen.data.store import Scratch
    from tumorscreen.imaging.batch import scratch_parent

    assert Scratch.bytes_needed(10, 4) == 10 * 16 * (4 + 1 + 1)
    assert scratch_parent(1, tmp_path) == tmp_path
    assert scratch_parent(1 << 62, tmp_path) is None
    assert scratch_parent(1, tmp_path / "missing") is None
