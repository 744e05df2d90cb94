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
from tumorscreen.imaging.mask import brain_mask, head_mask
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
