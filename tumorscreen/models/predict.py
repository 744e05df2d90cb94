"""Batched inference on uint8 image arrays, at the precision the model was trained in,
with BatchNorm folded into the convolutions in fp32."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from tumorscreen.models.backbones import ScreenNet, set_submodule
from tumorscreen.models.fold import inference_copy
from tumorscreen.train.device import autocast


def to_input(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """(N, S, S) uint8 -> (N, 1, S, S) float in [0, 1] on ``device``."""
    images = batch.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def input_batches(images: np.ndarray, batch_size: int, device: torch.device,
                  channels_last: bool) -> Iterator[torch.Tensor]:
    """(N, S, S) uint8 images -> their (B, 1, S, S) float inputs in order, ``batch_size`` at
    a time."""
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        yield to_input(batch, device, channels_last)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, device: torch.device,
                   precision: str, batch_size: int = 64, channels_last: bool = False,
                   view: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Logits of (N, S, S) uint8 images -> (N, K) float32, in eval mode, in input order;
    ``view`` maps each (B, 1, S, S) input batch first (test-time augmentation). ``model``
    itself is left as it was (mode, device, weights)."""
    network = inference_copy(model, precision).to(device)
    if channels_last:
        network.to(memory_format=torch.channels_last)
    outputs = []
    for inputs in input_batches(images, batch_size, device, channels_last):
        with autocast(device, precision):
            outputs.append(network(view(inputs) if view else inputs).float().cpu())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(outputs).numpy()


def pooled_features(model: ScreenNet, images: np.ndarray, device: torch.device,
                    precision: str, batch_size: int = 64,
                    channels_last: bool = False) -> np.ndarray:
    """(N, S, S) uint8 images -> (N, F) float32: the pooled features the network's head
    reads (its input), in eval mode. ``model`` is left as it was."""
    body = copy.deepcopy(model)
    set_submodule(body.backbone, body.head, nn.Identity())
    return predict_logits(body, images, device, precision, batch_size, channels_last)


def checkpoint_logits(model: nn.Module, config: dict, images: np.ndarray,
                      device: torch.device,
                      view: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Logits at the checkpoint's own training precision and memory format."""
    return predict_logits(model, images, device, config["precision"], config["batch_size"],
                          config["channels_last"], view)
