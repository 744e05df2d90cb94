"""N4 recovers a known multiplicative bias on a phantom; the mask is shared with QC."""

import numpy as np
import pytest

from tumorscreen.data.synthetic import (
    add_lesion,
    bias_field,
    render_head,
    rician_noise,
    scale_to_uint8,
)
from tumorscreen.imaging.decode import to_uint8
from tumorscreen.imaging.mask import brain_mask, head_mask, mask_shape
from tumorscreen.imaging.n4 import n4_correct

N4 = {"shrink": 2, "iterations": [50, 50, 30], "convergence": 1e-6}


def biased_phantom(seed=0, size=128, strength=0.4):
    rng = np.random.default_rng(seed)
    head, geo = render_head(rng, size, size)
    anatomy = add_lesion(rng, head, geo, "glioma")
    field = bias_field(rng, size, size, strength)
    image = scale_to_uint8(rician_noise(rng, anatomy * field, 0.01))
    return image, field


def recovered_correlation(image, field, mask):
    result = n4_correct(image, mask, **N4)
    inside = mask > 0
    truth, found = np.log(field)[inside], result.log_bias[inside]
    return float(np.corrcoef(truth, found)[0, 1]), result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_n4_recovers_the_injected_bias(seed):
    image, field = biased_phantom(seed)
    mask = brain_mask(image)
    correlation, result = recovered_correlation(image, field, mask)
    assert correlation >= 0.95
    assert np.ptp(result.log_bias[mask]) > 0.1  # a real field, not a constant
    assert result.corrected.shape == image.shape


def test_uint8_input_and_0_255_mask_are_handled():
    image, field = biased_phantom(3)
    assert image.dtype == np.uint8
    mask255 = brain_mask(image).astype(np.uint8) * 255
    correlation, _ = recovered_correlation(image, field, mask255)
    assert correlation >= 0.95


def test_empty_mask_is_refused():
    with pytest.raises(ValueError, match="non-empty mask"):
        n4_correct(np.ones((32, 32), np.uint8), np.zeros((32, 32), bool), **N4)


def test_mask_covers_the_head_and_rim_erosion_shrinks_it():
    image, _ = biased_phantom(4)
    mask, level = head_mask(image)
    assert 0.3 < mask.mean() < 0.7 and level > 0
    eroded = brain_mask(image, rim_erosion=0.05)
    assert eroded.sum() < mask.sum() and not (eroded & ~mask).any()
    assert not head_mask(to_uint8(np.zeros((64, 64))))[0].any()


def test_project_default_n4_settings_recover_the_bias(project_params):
    """The shipped, faster settings (not only the careful ones above) find the field."""
    n4 = project_params["preprocess"]["n4"]
    settings = {"shrink": n4["shrink"], "iterations": [n4["iterations"]] * n4["levels"],
                "convergence": n4["convergence"], "max_fit_side": n4["max_fit_side"]}
    correlations = []
    for seed in range(4):
        image, field = biased_phantom(seed)
        mask = brain_mask(image)
        found = n4_correct(image, mask, **settings).log_bias[mask]
        correlations.append(np.corrcoef(np.log(field)[mask], found)[0, 1])
    assert np.median(correlations) >= 0.95 and min(correlations) >= 0.9, correlations


def test_max_fit_side_coarsens_the_fit_of_large_images():
    image, _ = biased_phantom(5, size=256)
    result = n4_correct(image, brain_mask(image), 2, [5], 1e-3, max_fit_side=64)
    assert result.shrink == 4 and result.log_bias.shape == image.shape


def ellipse_head(size=128, value=60, noise=6, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    head = ((x - size / 2) / (size * 0.35)) ** 2 + ((y - size / 2) / (size * 0.42)) ** 2 < 1
    image = np.where(head, value, 4) + rng.normal(0, noise, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8), head


def test_a_bright_lesion_does_not_become_the_head():
    # linear Otsu splits lesion vs rest here, and the "head" becomes the lesion
    image, head = ellipse_head()
    y, x = np.mgrid[:128, :128]
    image[(x - 70) ** 2 + (y - 60) ** 2 < 15**2] = 250
    mask, _ = head_mask(image)
    assert (mask & head).sum() / head.sum() > 0.95 and (mask & ~head).sum() < 0.05 * head.sum()


def test_a_thin_frame_is_not_filled_into_the_mask():
    image, head = ellipse_head()
    image[[1, -2], 1:-1] = 255
    image[1:-1, [1, -2]] = 255
    mask, _ = head_mask(image)
    assert abs(mask.sum() / head.sum() - 1) < 0.1
    assert mask_shape(mask)["border_contact"] == 0


def test_mask_shape_measures():
    image, head = ellipse_head()
    shape = mask_shape(head_mask(image)[0])
    assert shape["solidity"] > 0.95 and shape["border_contact"] == 0
    assert abs(shape["fraction"] - head.mean()) < 0.02
    ring = head & ~np.roll(head, 30, axis=1)  # a crescent: far from convex
    assert mask_shape(ring)["solidity"] < 0.8
    assert mask_shape(np.ones((10, 10), bool))["border_contact"] == 1.0
    assert mask_shape(np.zeros((10, 10), bool)) == {"fraction": 0.0, "border_contact": 0.0,
                                                      "solidity": 0.0}
