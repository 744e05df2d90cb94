"""Grad-CAM (Selvaraju et al. 2017) with forward hooks, batched, on un-augmented inputs.

Written here with hooks because the ``grad-cam`` package pins opencv-python-headless, which
clashes with the project's OpenCV. The graph is cut at the target layer (its output becomes a
leaf), so the backward pass runs through the head only, not the whole network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tumorscreen.errors import TumorScreenError
from tumorscreen.models.predict import input_batches
from tumorscreen.train.device import autocast

Target = Callable[[torch.Tensor], torch.Tensor]  # (B, K) logits -> (B,) scalars to explain


def _spatial(output: object) -> bool:
    return isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-2:].numel() > 1


def default_target_layer(model: nn.Module, side: int) -> str:
    """The module whose spatial (N, C, h, w) output, h * w > 1, is produced last in a forward
    pass on a (1, 1, side, side) input: the feature map the global pooling reads.

    Containers count, so a ResNet gives ``layer4`` and a timm EfficientNet its final
    BatchNorm+activation ``bn2``.
    """
    finished: list[str] = []
    handles = [module.register_forward_hook(
        lambda _m, _i, out, name=name: finished.append(name) if _spatial(out) else None)
        for name, module in model.named_modules() if name]
    try:
        was_training = model.training
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, side, side,
                                     device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise TumorScreenError(f"no layer gives a spatial feature map at {side} px; "
                               "set audit.target_layer")
    return finished[-1]


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


def grad_cam(model: nn.Module, images: np.ndarray, targets: Mapping[str, Target], layer: str,
             device: torch.device, precision: str = "fp32", batch_size: int = 32,
             channels_last: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits and one Grad-CAM per target for (N, S, S) uint8 images, in eval mode.

    Returns (N, K) float32 logits and, per target name, (N, S, S) float32 maps: the ReLU of
    the gradient-weighted channel sum at ``layer``, bilinearly resized to S x S and not
    normalised (a map's scale is its evidence). Images are independent in eval mode, so each
    batch needs one forward pass and one backward pass per target.
    """
    model.eval().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    captured: list[torch.Tensor] = []

    def cut_graph(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        captured.append(output.detach().requires_grad_())
        return captured[-1].clone()  # a copy, so an in-place op downstream leaves A intact

    handle = model.get_submodule(layer).register_forward_hook(cut_graph)
    logits, maps = [], {name: [] for name in targets}
    try:
        with _frozen(model), torch.enable_grad():
            for inputs in input_batches(images, batch_size, device, channels_last):
                captured.clear()
                with autocast(device, precision):
                    output = model(inputs).float()
                activation = captured[-1]
                for name, target in targets.items():
                    gradient, = torch.autograd.grad(target(output).sum(), activation,
                                                    retain_graph=True)
                    weights = gradient.float().mean(dim=(2, 3), keepdim=True)
                    cam = F.relu((weights * activation.float()).sum(dim=1, keepdim=True))
                    cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear",
                                        align_corners=False)
                    maps[name].append(cam[:, 0].detach().cpu())
                logits.append(output.detach().cpu())
    finally:
        handle.remove()
    side = images.shape[-1] if images.ndim == 3 else 0
    return (torch.cat(logits).numpy() if logits else np.zeros((0, 0), np.float32),
            {name: torch.cat(parts).numpy() if parts else np.zeros((0, side, side), np.float32)
             for name, parts in maps.items()})


def class_target(index: int) -> Target:
    """The logit of one class."""
    return lambda logits: logits[:, index]


def predicted_class_target(logits: torch.Tensor) -> torch.Tensor:
    """Each image's highest logit (the class the model predicts)."""
    return logits.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)
