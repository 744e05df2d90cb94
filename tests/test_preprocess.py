"""The one preprocess(): geometry, toggles, standardisation, rejects and input forms."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tumorscreen.data.synthetic import INTERNAL_SITE, render_phantom
from tumorscreen.errors import TumorScreenError
from tumorscreen.imaging.geometry import fit_square, mask_box
from tumorscreen.imaging.nyul import image_landmarks
from tumorscreen.imaging.preprocess import (
    STEPS,
    PreprocessConfig,
    PreprocessState,
    finish,
    fit_state,
    metadata_record,
    prepare,
    preprocess,
    to_float_gray,
)
from tumorscreen.params import set_dotted


def config(project_params, **changes) -> PreprocessConfig:
    params = copy.deepcopy(project_params["preprocess"])
    for dotted, value in changes.items():
        set_dotted(params, dotted, value)
    return PreprocessConfig.from_params(params)


def phantoms(count=6, seed=0, height=128, width=128, label="glioma"):
    rng = np.random.default_rng(seed)
    return [render_phantom(rng, label, height, width, INTERNAL_SITE)[0] for _ in range(count)]


@pytest.fixture(scope="module")
def cfg(project_params):
    return config(project_params)


@pytest.fixture(scope="module")
def state(cfg):
    return fit_state([prepare(image, cfg) for image in phantoms()], cfg)


def test_output_is_the_model_input_and_deterministic(cfg, state):
    image = phantoms(1, seed=7)[0]
    out, metadata = preprocess(image, state, cfg)
    again, _ = preprocess(image, state, cfg)
    assert out.dtype == np.uint8 and out.shape == (cfg.size, cfg.size)
    assert np.array_equal(out, again)
    assert metadata["mask"].shape == out.shape and metadata["mask"].dtype == bool
    assert not out[~metadata["mask"]].any()  # background zeroed, burnt-in text included
    assert out[metadata["mask"]].std() > 20
    assert metadata["preprocess_decision"] == "pass"
    assert metadata["n4_log_bias_max"] > metadata["n4_log_bias_min"]
    assert set(metadata["seconds"]) == {"mask", "n4", "resize", "landmarks", "nyul",
                                         "clahe"}
    record = metadata_record(metadata)
    assert len(record["nyul_landmarks"].split(";")) == len(cfg.percentiles)


def test_aspect_ratio_is_kept_by_padding_not_stretching(project_params, state):
    cfg = config(project_params, **{"crop.enabled": False})
    wide = phantoms(1, seed=3, height=100, width=200)[0]
    out, metadata = preprocess(wide, state, cfg)
    rows = np.flatnonzero(out.any(axis=1))
    assert rows[0] >= cfg.size // 4 - 1 and rows[-1] <= cfg.size * 3 // 4  # padded bands
    assert metadata["scale"] == pytest.approx(cfg.size / 200)
    square, _ = fit_square(np.ones((50, 100), np.float32), 64)
    assert square[:16].sum() == 0 and square[48:].sum() == 0 and square[16:48].all()


def test_crop_box_follows_the_mask_with_a_margin():
    mask = np.zeros((100, 100), bool)
    mask[20:60, 30:50] = True
    assert mask_box(mask, 0.1) == (16, 64, 26, 54)
    assert mask_box(np.zeros((8, 9), bool), 0.1) == (0, 8, 0, 9)


def test_every_step_toggle_changes_the_output(project_params, cfg, state):
    image = phantoms(1, seed=9)[0]
    reference, _ = preprocess(image, state, cfg)
    for step in STEPS:
        off = config(project_params, **{f"{step}.enabled": False})
        off_state = fit_state([prepare(x, off) for x in phantoms()], off)
        out, metadata = preprocess(image, off_state, off)
        assert not np.array_equal(out, reference), step
        assert out.shape == reference.shape
    n4_off = config(project_params, **{"n4.enabled": False})
    _, metadata = preprocess(image, state, n4_off)
    assert np.isnan(metadata["n4_log_bias_min"])


def test_nyul_maps_differently_windowed_images_to_one_scale(project_params):
    cfg = config(project_params, **{"clahe.enabled": False, "n4.enabled": False})
    images = phantoms(4, seed=11)
    state = fit_state([prepare(x, cfg) for x in images], cfg)
    dark = (images[0].astype(np.float64) / 255.0) ** 1.6  # re-windowed copy of one image
    outs = [preprocess(x, state, cfg) for x in (images[0], dark)]
    found = [image_landmarks(out[meta["mask"]], cfg.percentiles) / 255.0 for out, meta in outs]
    inner = slice(1, -1)
    assert np.abs(found[0][inner] - np.asarray(state.standard)[inner]).max() < 0.03
    assert np.abs(found[0][inner] - found[1][inner]).max() < 0.03
    raw = [image_landmarks(x[m["mask"]], cfg.percentiles) for x, (_, m) in
           zip((images[0] / 255.0, dark), outs, strict=True)]
    assert np.abs(raw[0] - raw[1]).max() > 0.1  # the inputs really did differ


def test_fit_state_uses_only_the_images_it_is_given(cfg):
    bright = [prepare(x, cfg) for x in phantoms(3, seed=1)]
    dark = [prepare((x / 255.0) ** 2, cfg) for x in phantoms(3, seed=2)]
    state = fit_state(bright, cfg)
    assert state.fitted_on == 3
    assert fit_state(bright, cfg) == state
    assert fit_state(bright + dark, cfg) != state
    rejected = prepare(np.zeros((64, 64), np.uint8), cfg)
    assert fit_state([*bright, rejected], cfg) == state
    with pytest.raises(TumorScreenError, match="no usable train image"):
        fit_state([rejected], cfg)
    assert PreprocessState.from_json(state.to_json()) == state


def test_an_empty_mask_is_rejected_with_a_reason_and_zeros(cfg, state):
    out, metadata = preprocess(np.zeros((96, 80), np.uint8), state, cfg)
    assert metadata["preprocess_decision"] == "reject"
    assert metadata["preprocess_reason"].startswith("empty_mask")
    assert out.shape == (cfg.size, cfg.size) and not out.any()


def test_an_implausible_mask_is_flagged(cfg, state):
    image = phantoms(1, seed=4)[0]
    framed = image.copy()
    framed[2:-2, 2:-2] = np.maximum(framed[2:-2, 2:-2], 90)  # the whole frame is "head"
    _, metadata = preprocess(framed, state, cfg)
    assert metadata["preprocess_decision"] == "flag"
    assert metadata["preprocess_reason"].split(":")[0] in {"large_mask", "border_contact"}
    assert metadata["mask"].all()  # untrusted: nothing cropped or blanked by it


def test_integer_float_and_colour_inputs_agree(cfg, state):
    image8 = phantoms(1, seed=5)[0]
    reference, _ = preprocess(image8, state, cfg)
    as_float = image8.astype(np.float32) / 255.0
    as_16 = image8.astype(np.uint16) * 257
    as_rgb = np.repeat(image8[..., None], 3, axis=2)
    for variant in (as_float, as_16, as_rgb):
        out, _ = preprocess(variant, state, cfg)
        assert np.abs(out.astype(int) - reference).max() <= 1
    assert to_float_gray(as_16).max() <= 1.0
    with pytest.raises(ValueError, match="2-D grayscale"):
        to_float_gray(np.zeros((2, 3, 4, 5)))


def test_stale_or_missing_landmarks_are_refused(project_params, cfg, state):
    prepared = prepare(phantoms(1)[0], cfg)
    other = config(project_params, **{"nyul.percentiles": [2, 50, 98]})
    with pytest.raises(TumorScreenError, match="other percentiles"):
        finish(prepared, state, other)
    no_nyul = PreprocessState(cfg.percentiles, None, 3)
    with pytest.raises(TumorScreenError, match="no landmarks"):
        finish(prepared, no_nyul, cfg)


@pytest.mark.parametrize(("change", "words"), [
    ({"size": 8}, "size must be >= 16"),
    ({"n4.levels": 0}, "n4.levels"),
    ({"nyul.percentiles": [50, 10, 90]}, "percentiles"),
    ({"nyul.scale": [0.9, 0.1]}, "nyul.scale"),
    ({"clahe.tiles": 0}, "clahe"),
    ({"mask.actions.empty_mask": "discard"}, "unknown actions"),
])
def test_bad_params_are_refused_with_the_reason(project_params, change, words):
    with pytest.raises(TumorScreenError, match=words):
        config(project_params, **change)


def test_a_missing_param_is_named(project_params):
    params = copy.deepcopy(project_params["preprocess"])
    del params["clahe"]["clip"]
    with pytest.raises(TumorScreenError, match="'clip'"):
        PreprocessConfig.from_params(params)
