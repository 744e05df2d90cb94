"""Batch-norm folding for inference.

An eval-mode BatchNorm is an affine map per channel, so it merges exactly into the weights
of the convolution before it. On a CPU a third of a Lite0 forward pass is BatchNorm memory
traffic, and folded inference is correspondingly faster at the same precision.
"""

from __future__ import annotations

import copy
import itertools

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _activation_of(norm: nn.BatchNorm2d) -> nn.Module:
    """What a folded BatchNorm still has to do: timm's BatchNormAct2d also applies ``drop``
    and ``act``; a plain BatchNorm2d does nothing more."""
    parts = [getattr(norm, name) for name in ("drop", "act") if hasattr(norm, name)]
    return nn.Sequential(*parts) if parts else nn.Identity()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` in which every Conv2d followed, as the next child of
    the same parent, by a BatchNorm2d of matching width with running statistics is one
    convolution. ``model`` itself is not changed.

    Sibling order is how every supported backbone applies them (conv then norm); tests
    check the folded outputs equal the original for each backbone.
    """
    folded = copy.deepcopy(model).eval()
    for parent in list(folded.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (norm_name, norm) in itertools.pairwise(children):
            if (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
                    and norm.track_running_stats and conv.out_channels == norm.num_features):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(parent, norm_name, _activation_of(norm))
    return folded


def inference_copy(model: nn.Module, precision: str) -> nn.Module:
    """An eval-mode copy of ``model`` to run inference with: folded in fp32. Under bf16 or
    fp16 autocast BatchNorm stays apart, as in training: folded weights rounded to 16 bits
    carry the mean subtraction into the rounding and changed answers in a test."""
    return fold_batchnorm(model) if precision == "fp32" else copy.deepcopy(model).eval()
