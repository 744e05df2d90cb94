"""Real N4 bias-field correction (SimpleITK), fitted on a shrunk image, applied at full size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class N4Result:
    corrected: np.ndarray  # (H, W) float32, input / exp(log_bias)
    log_bias: np.ndarray  # (H, W) float32 log of the estimated multiplicative field
    shrink: int  # the shrink factor the fit used


def n4_correct(
    image: np.ndarray,
    mask: np.ndarray,
    shrink: int,
    iterations: list[int],
    convergence: float,
    max_fit_side: int = 0,
) -> N4Result:
    """Estimate and remove a smooth multiplicative bias with N4 inside ``mask``.

    ``image`` is (H, W), any real or integer dtype (uint8 is cast to float32: N4 needs a real
    pixel type); ``mask`` is (H, W) bool or any 0/non-zero array (0/255 included: it is
    binarised to the label 1 N4 expects, else N4 would fit nothing and return a flat field).
    The fit runs on the image shrunk by ``shrink`` with one fitting level per entry of
    ``iterations``; the log-bias is then evaluated on the full-resolution grid. With
    ``max_fit_side`` > 0 the shrink grows so that the fitting grid's longer side stays within
    it (the field is smooth; a 2000-px scan needs no finer fit than a 224-px one). One ITK
    thread, so a process pool is the only parallelism.
    """
    values = np.asarray(image, dtype=np.float32)
    binary = np.asarray(mask) > 0
    if not binary.any():
        raise ValueError("N4 needs a non-empty mask")
    # N4 works on log intensities: lift zeros inside the mask to a small positive floor.
    floor = max(float(values[binary].max()) * 1e-3, 1e-6)
    full = sitk.GetImageFromArray(np.maximum(values, floor))
    full_mask = sitk.GetImageFromArray(binary.astype(np.uint8))
    if max_fit_side > 0:
        shrink = max(shrink, math.ceil(max(values.shape) / max_fit_side))
    factors = [max(1, shrink)] * full.GetDimension()
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(n) for n in iterations])
    corrector.SetConvergenceThreshold(convergence)
    corrector.SetNumberOfThreads(1)
    # N4's inner filters follow the global default, not the filter's own thread count
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    corrector.Execute(sitk.Shrink(full, factors), sitk.Shrink(full_mask, factors))
    log_bias = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(full)).astype(np.float32)
    corrected = (values / np.exp(log_bias)).astype(np.float32)
    return N4Result(corrected=corrected, log_bias=log_bias, shrink=factors[0])
