import numpy as np

from tumorscreen.imaging.nyul import (
    DEFAULT_PERCENTILES,
    apply_standardisation,
    fit_standard_landmarks,
    image_landmarks,
)


def test_images_differing_by_a_monotonic_contrast_map_to_the_same_scale():
    rng = np.random.default_rng(0)
    base = rng.gamma(4.0, 20.0, size=(64, 64))
    mask = np.ones_like(base, bool)
    brighter = 3.0 * base + 40.0
    gamma = base**1.3
    train = np.stack([image_landmarks(x[mask], DEFAULT_PERCENTILES) for x in (base, brighter)])
    standard = fit_standard_landmarks(train)
    assert standard[0] == 0.0 and standard[-1] == 1.0 and np.all(np.diff(standard) > 0)
    mapped = [apply_standardisation(x, mask, standard, DEFAULT_PERCENTILES)
              for x in (base, brighter, gamma)]
    assert np.allclose(mapped[0], mapped[1], atol=1e-4)
    inner = (base > np.percentile(base, 1)) & (base < np.percentile(base, 99))
    assert np.abs(mapped[0][inner] - mapped[2][inner]).max() < 0.03


def test_mapping_is_monotonic_beyond_the_end_landmarks():
    image = np.linspace(0, 255, 256).reshape(16, 16)
    mask = np.zeros_like(image, bool)
    mask[4:12, 4:12] = True  # landmarks from the middle of the range only
    standard = fit_standard_landmarks(image_landmarks(image[mask], DEFAULT_PERCENTILES)[None])
    out = apply_standardisation(image, mask, standard, DEFAULT_PERCENTILES)
    assert np.all(np.diff(out.ravel()) > 0)
    assert out.min() < 0 < 1 < out.max()


def test_fit_uses_only_the_landmarks_it_is_given():
    a = np.array([[0.0, 5.0, 10.0]])
    b = np.array([[0.0, 9.0, 10.0]])
    assert np.allclose(fit_standard_landmarks(a), [0.0, 0.5, 1.0])
    assert np.allclose(fit_standard_landmarks(np.vstack([a, b])), [0.0, 0.7, 1.0])
