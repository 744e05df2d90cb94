"""The training loop on CPU: learning, determinism, the frozen warm-up, augmentation limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from tumorscreen.errors import TumorScreenError
from tumorscreen.metrics.calibration import tumor_nll
from tumorscreen.models.backbones import TINY, build_network
from tumorscreen.models.predict import predict_logits, to_input
from tumorscreen.models.score import NO_TUMOR, tumor_score
from tumorscreen.records import cpu_model
from tumorscreen.train.augment import AugmentConfig, augment_batch
from tumorscreen.train.device import (
    describe_device,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from tumorscreen.train.loop import (
    TrainConfig,
    average_states,
    class_weights,
    error_weights,
    evaluate_split,
    feature_clusters,
    fit,
    fixed_batchnorm_statistics,
    full_phase_schedule,
    group_weights,
    inference_batchnorm_statistics,
    make_optimizer,
    model_loss,
    random_batch,
    raw_images_per_second,
    recompute_batchnorm,
    screening_loss,
    sharpness_aware_step,
    weight_soup,
    zero_head,
)

CPU = torch.device("cpu")


def blobs(count: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Four classes told apart by where a bright square sits (one per quadrant)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 4
    images = rng.integers(0, 60, (count, size, size)).astype(np.uint8)
    half = size // 2
    for image, label in zip(images, labels, strict=True):
        y, x = divmod(int(label), 2)
        image[y * half + 4:y * half + 12, x * half + 4:x * half + 12] = 230
    return images, labels.astype(np.int64)


def quick_config(**changes) -> TrainConfig:
    base = {"batch_size": 16, "warmup_epochs": 1, "epochs": 8, "lr": 0.01, "patience": 8,
            "backbone_lr_scale": 0.5, "augment": {"enabled": False}}
    return TrainConfig.from_params({**base, **changes})


def train_tiny(cfg: TrainConfig):
    seed_everything(cfg.seed)
    model, _ = build_network(TINY, 4)
    return fit(model, blobs(64, 0), blobs(32, 1), cfg, CPU, "fp32")


def same_curves(first, second) -> bool:
    """Whether two fits logged the same epochs, every figure equal but the timed speed."""
    def curves(fitted) -> list[dict[str, float]]:
        return [{k: v for k, v in row.items() if k != "images_per_s"} for row in fitted.history]
    return curves(first) == curves(second)


def test_loop_learns_a_simple_task_on_cpu():
    result = train_tiny(quick_config())
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[result.best_epoch]["val_accuracy"] >= 0.9
    assert result.train_images > 0 and result.train_seconds > 0


def test_same_seed_gives_the_same_metrics_and_weights():
    first, second = train_tiny(quick_config(epochs=3)), train_tiny(quick_config(epochs=3))
    drop = ("images_per_s",)
    strip = [{k: v for k, v in row.items() if k not in drop} for row in first.history]
    assert strip == [{k: v for k, v in row.items() if k not in drop} for row in second.history]
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    third = train_tiny(quick_config(epochs=3, seed=1))
    assert third.history[0]["train_loss"] != first.history[0]["train_loss"]


def test_warm_up_trains_only_the_head_and_keeps_batchnorm_statistics():
    seed_everything(0)
    model, _ = build_network(TINY, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, blobs(32, 0), blobs(16, 1), quick_config(epochs=0), CPU, "fp32")
    head = f"backbone.{model.head}."
    for key, value in model.state_dict().items():
        changed = not torch.equal(value, before[key])
        assert changed == (key.startswith(head)), key


def test_zero_head_gives_the_backbone_no_first_gradient_and_still_learns():
    seed_everything(0)
    model, _ = build_network(TINY, 4)
    zero_head(model)
    images, labels = blobs(15, 0)  # unequal classes, so the bias gradient is not zero
    loss = torch.nn.functional.cross_entropy(model(to_input(torch.from_numpy(images), CPU,
                                                            False)), torch.from_numpy(labels))
    loss.backward()
    backbone_grads = [p.grad for p in model.backbone_parameters() if p.grad is not None]
    assert backbone_grads and not any(grad.any() for grad in backbone_grads)
    assert all(p.grad.abs().sum() > 0 for p in model.head_parameters())
    zeroed = train_tiny(quick_config(warmup_epochs=0, epochs=4, zero_init_head=True))
    random_start = train_tiny(quick_config(warmup_epochs=0, epochs=4))
    assert zeroed.history[zeroed.best_epoch]["val_accuracy"] >= 0.9
    assert zeroed.history[0]["train_loss"] != random_start.history[0]["train_loss"]


def test_fine_tune_rates_put_the_backbone_below_the_head():
    model, _ = build_network(TINY, 4)
    groups = make_optimizer(model, quick_config(lr=0.01, backbone_lr_scale=0.1), False)
    assert [g["lr"] for g in groups.param_groups] == pytest.approx([0.001, 0.01])
    warm = make_optimizer(model, quick_config(warmup_lr=0.02), True).param_groups
    assert len(warm) == 1 and warm[0]["lr"] == 0.02
    assert len(warm[0]["params"]) == len(model.head_parameters())


def test_sgd_takes_the_full_phase_at_the_same_rates_and_the_warm_up_keeps_adamw():
    model, _ = build_network(TINY, 4)
    full = make_optimizer(model, quick_config(lr=0.01, backbone_lr_scale=0.1,
                                              optimizer="sgd"), False)
    assert isinstance(full, torch.optim.SGD)
    assert full.defaults["nesterov"] and full.defaults["momentum"] == 0.9
    assert [g["lr"] for g in full.param_groups] == pytest.approx([0.001, 0.01])
    warm = make_optimizer(model, quick_config(optimizer="sgd"), True)
    assert isinstance(warm, torch.optim.AdamW)
    learned = train_tiny(quick_config(optimizer="sgd", lr=0.05))
    assert learned.history[learned.best_epoch]["val_accuracy"] >= 0.9
    with pytest.raises(TumorScreenError, match="optimizer"):
        TrainConfig.from_params({"optimizer": "adam"})


def test_layer_decay_slows_the_stages_nearer_the_input():
    model, _ = build_network("efficientnet_lite0", 4, pretrained=False)
    cfg = quick_config(lr=0.01, backbone_lr_scale=0.5, layer_decay=0.5)
    groups = make_optimizer(model, cfg, False).param_groups
    count = len(model.stages)  # the stem and seven blocks; the head convolution sits above
    rates = [0.005 * 0.5 ** (count - index) for index in range(count)]
    assert [g["lr"] for g in groups] == pytest.approx([*rates, 0.005, 0.01])
    for index in range(count):
        assert [id(p) for p in groups[index]["params"]] == \
            [id(p) for p in model.stage_parameters(index)]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each one once
    for bad in (0.0, 1.5):
        with pytest.raises(TumorScreenError, match="layer_decay"):
            TrainConfig.from_params({"layer_decay": bad})


def test_rate_warm_up_rises_linearly_to_each_groups_rate_then_decays_by_cosine():
    def rates(warmup_steps: int) -> list[list[float]]:
        params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
        optimizer = torch.optim.AdamW([{"params": params[:1], "lr": 0.01},
                                       {"params": params[1:], "lr": 0.005}])
        schedule = full_phase_schedule(optimizer, 20, warmup_steps)
        seen = []
        for _ in range(20):
            seen.append([group["lr"] for group in optimizer.param_groups])
            optimizer.step()
            schedule.step()
        return seen

    warm, plain = np.array(rates(5)), np.array(rates(0))
    rise = 0.01 + (1 - 0.01) * np.arange(6) / 5  # 1% of the rate at the first step
    assert warm[:6, 0] == pytest.approx(0.01 * rise) and warm[:6, 1] == pytest.approx(0.005 * rise)
    cosine = 0.5 * (1 + np.cos(np.pi * np.arange(15) / 15))
    assert warm[5:, 0] == pytest.approx(0.01 * cosine)
    assert plain[:, 0] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * np.arange(20) / 20)))
    fitted = train_tiny(quick_config(epochs=3, lr_warmup_epochs=1))
    # 4 steps per epoch: the first full epoch rises to the top, the next is half-way down
    assert [row["lr"] for row in fitted.history[1:3]] == pytest.approx([0.01, 0.005])
    assert fitted.history[-1]["val_accuracy"] >= 0.5
    for bad in (-0.5, 3.0):
        with pytest.raises(TumorScreenError, match="lr_warmup_epochs"):
            TrainConfig.from_params({"epochs": 3, "lr_warmup_epochs": bad})


def test_early_stopping_ends_when_val_loss_stops_improving():
    result = train_tiny(quick_config(epochs=30, patience=2, lr=0.05))
    assert result.stopped_early and len(result.history) < 31
    best = min(row["val_loss"] for row in result.history)
    assert result.history[result.best_epoch]["val_loss"] == best


def test_class_weights_and_balanced_sampler():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 2 + [3] * 2)
    weights = class_weights(labels, 4)
    assert weights[labels].mean() == pytest.approx(1.0) and weights[1] == 3 * weights[0]
    with pytest.raises(TumorScreenError, match="no training images"):
        class_weights(np.array([0, 1, 2]), 4)
    result = train_tiny(quick_config(epochs=1, imbalance="balanced_sampler"))
    assert len(result.history) == 2


def test_group_weights_give_each_class_and_each_group_within_it_equal_weight():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    groups = np.array(["a", "a", "a", "b", "c", "d", "e", "f", "g", "g"])
    weights = group_weights(labels, groups, 4)
    assert weights.mean() == pytest.approx(1.0)
    per_class = [weights[labels == k].sum() for k in range(4)]
    assert per_class == pytest.approx([2.5] * 4)
    assert weights[:3] == pytest.approx([weights[3] / 3] * 3)  # a group of 3 against a single
    assert weights[8] == pytest.approx(weights[7] / 2)
    with pytest.raises(TumorScreenError, match="no training images"):
        group_weights(np.array([0, 1, 2]), np.array(["a", "b", "c"]), 4)
    cfg = quick_config(epochs=1, imbalance="group_weights")
    seed_everything(0)
    model, _ = build_network(TINY, 4)
    images, labels = blobs(64, 0)
    with pytest.raises(TumorScreenError, match="group ids"):
        fit(model, (images, labels), blobs(32, 1), cfg, CPU, "fp32")
    trained = fit(model, (images, labels), blobs(32, 1), cfg, CPU, "fp32",
                  groups=(np.arange(64) // 4).astype(str))
    assert len(trained.history) == 2


def test_group_weights_below_power_one_keep_part_of_a_groups_size():
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    groups = np.array([0, 0, 0, 0, 1, 2, 2])
    weights = group_weights(labels, groups, 2, power=0.5)
    assert weights[0] == pytest.approx(weights[4] / 2)  # a group of 4: 4 ** -0.5 each
    assert [weights[labels == k].sum() for k in range(2)] == pytest.approx([3.5, 3.5])
    np.testing.assert_allclose(group_weights(labels, groups, 2, power=1.0),
                               group_weights(labels, groups, 2))


def test_feature_clusters_follow_the_look_of_the_images_not_the_labels():
    images, _ = blobs(48, 0)
    images[24:] = np.clip(images[24:].astype(int) + 120, 0, 255).astype(np.uint8)  # two looks
    seed_everything(0)
    model, _ = build_network(TINY, 4)
    clusters = feature_clusters(model, images, 2, 0, CPU, "fp32")
    assert len(set(clusters[:24])) == 1 and len(set(clusters[24:])) == 1
    assert clusters[0] != clusters[24]
    np.testing.assert_array_equal(clusters, feature_clusters(model, images, 2, 0, CPU, "fp32"))
    assert model.backbone[-1].out_features == 4  # the head is removed from a copy only


def test_cluster_weights_favour_a_look_that_is_rare_within_its_class(monkeypatch):
    from tumorscreen.train import loop
    images, labels = blobs(64, 0)
    rare = (np.arange(64) < 16) & (labels < 2)  # four images each of classes 0 and 1
    images[rare] = np.clip(images[rare].astype(int) + 120, 0, 255).astype(np.uint8)
    seen_weights, original_loader = [], loop.train_loader

    def recording_loader(images, labels, cfg, generator, image_weights=None):
        seen_weights.append(image_weights)
        return original_loader(images, labels, cfg, generator, image_weights)

    monkeypatch.setattr(loop, "train_loader", recording_loader)
    cfg = quick_config(epochs=1, imbalance="cluster_weights", clusters=2, cluster_power=1.0)
    seed_everything(0)
    result = fit(build_network(TINY, 4)[0], (images, labels), blobs(32, 1), cfg, CPU, "fp32")
    assert len(result.history) == 2
    weights = seen_weights[0]
    assert weights.mean() == pytest.approx(1.0)
    in_class_0 = labels == 0
    assert weights[rare & in_class_0] == pytest.approx([weights[~rare & in_class_0][0] * 3] * 4)
    assert weights[labels == 3] == pytest.approx([1.0] * 16)  # one look: the class weight
    assert sorted(result.cluster_counts) == [[4, 4, 0, 0], [12, 12, 16, 16]]
    assert train_tiny(quick_config(epochs=1)).cluster_counts is None


def test_sharpness_aware_step_applies_the_gradient_of_the_perturbed_weights():
    torch.manual_seed(0)
    inputs, targets = torch.randn(8, 3), torch.randn(8, 1)
    model = torch.nn.Linear(3, 1)
    start = [p.detach().clone() for p in model.parameters()]

    def batch_loss() -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(inputs), targets)

    rho, start_loss = 0.5, batch_loss().item()
    gradient = torch.autograd.grad(batch_loss(), list(model.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in gradient))
    with torch.no_grad():
        for p, g in zip(model.parameters(), gradient, strict=True):
            p.add_(g * rho / norm)
    perturbed = torch.autograd.grad(batch_loss(), list(model.parameters()))
    with torch.no_grad():
        for p, w in zip(model.parameters(), start, strict=True):
            p.copy_(w)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert not torch.allclose(perturbed[0], gradient[0])  # the two steps can be told apart
    loss = sharpness_aware_step(model, batch_loss, optimizer, rho, None)
    assert loss.item() == pytest.approx(start_loss)  # the loss at the weights themselves
    for p, w, g in zip(model.parameters(), start, perturbed, strict=True):
        torch.testing.assert_close(p.detach(), w - 0.1 * g)


def test_fixed_batchnorm_statistics_normalise_by_the_batch_and_keep_the_running_ones():
    norm = torch.nn.BatchNorm1d(2, momentum=0.3).train()
    batch = torch.randn(16, 2) * 3 + 5
    with fixed_batchnorm_statistics(norm):
        out = norm(batch)
    assert norm.momentum == 0.3
    torch.testing.assert_close(norm.running_mean, torch.zeros(2))
    torch.testing.assert_close(out.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    norm(batch)
    assert not torch.allclose(norm.running_mean, torch.zeros(2))


def test_sam_trains_the_full_phase_and_is_refused_under_fp16():
    plain = train_tiny(quick_config(epochs=2))
    sharp = train_tiny(quick_config(epochs=2, sam_rho=0.05))
    assert plain.history[0]["train_loss"] == sharp.history[0]["train_loss"]  # warm-up: plain
    assert plain.history[-1]["train_loss"] != sharp.history[-1]["train_loss"]
    assert sharp.history[-1]["train_loss"] < sharp.history[0]["train_loss"]
    with pytest.raises(TumorScreenError, match="sam_rho"):
        TrainConfig.from_params({"sam_rho": -0.1})
    model, _ = build_network(TINY, 4)
    with pytest.raises(TumorScreenError, match="fp16"):
        fit(model, blobs(16, 0), blobs(8, 1), quick_config(sam_rho=0.05), CPU, "fp16")


def test_error_weights_mark_the_arg_max_misses():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 3.0], [0.5, 0.1]])
    assert error_weights(logits, np.array([0, 1, 0, 1]), 4.0).tolist() == [1, 1, 4, 4]


def test_warm_up_misses_weigh_more_in_the_full_phase(monkeypatch):
    from tumorscreen.train import loop
    images, labels = blobs(64, 0)
    keep = (labels != 0) | (np.arange(64) < 32)  # class 0 half as common: unequal weights
    train, val = (images[keep], labels[keep]), blobs(32, 1)

    def fit_tiny(cfg: TrainConfig):
        seed_everything(cfg.seed)
        return fit(build_network(TINY, 4)[0], train, val, cfg, CPU, "fp32")

    warmed = fit_tiny(quick_config(warmup_lr=0.001, epochs=0))  # weak: it leaves misses
    misses = predict_logits(warmed.model, train[0], CPU, "fp32").argmax(axis=1) != train[1]
    assert 0 < misses.sum() < len(misses)
    seen_weights, original_loader = [], loop.train_loader

    def recording_loader(images, labels, cfg, generator, image_weights=None):
        seen_weights.append(image_weights)
        return original_loader(images, labels, cfg, generator, image_weights)

    monkeypatch.setattr(loop, "train_loader", recording_loader)
    result = fit_tiny(quick_config(warmup_lr=0.001, epochs=1, upweight_errors=3.0))
    assert result.upweighted_images == misses.sum()
    expected = class_weights(train[1], 4)[train[1]] * np.where(misses, 3.0, 1.0)
    assert seen_weights[0] is None
    np.testing.assert_allclose(seen_weights[-1], expected / expected.mean(), rtol=1e-6)
    assert fit_tiny(quick_config(epochs=1)).upweighted_images is None


def test_image_weights_in_the_loss_match_the_class_weights_they_replace():
    logits, labels = torch.randn(8, 4), torch.tensor([0, 1, 2, 3, 2, 2, 0, 1])
    weights = torch.tensor([0.5, 1.0, 2.0, 1.5])
    for tumour_weight, gamma in ((0.0, 0.0), (0.7, 0.0), (0.0, 2.0)):
        cfg = quick_config(tumor_loss_weight=tumour_weight, focal_gamma=gamma)
        assert screening_loss(logits, labels, None, cfg, weights[labels]).item() == \
            pytest.approx(screening_loss(logits, labels, weights, cfg).item(), rel=1e-6)


def test_screening_loss_adds_a_class_weighted_tumour_term():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (12, 4))
    labels = np.array([0, 1, 2, 3] * 3)
    weights = class_weights(np.array([0, 0, 0, 1, 2, 3]), 4)
    as_torch = (torch.tensor(logits, dtype=torch.float32), torch.from_numpy(labels),
                torch.tensor(weights, dtype=torch.float32))
    four_class = log_loss(labels, torch.softmax(as_torch[0], 1).numpy(),
                          sample_weight=weights[labels], labels=range(4))
    tumour = labels != NO_TUMOR
    binary = log_loss(tumour, tumor_score(logits), sample_weight=weights[labels])
    plain = screening_loss(*as_torch, quick_config()).item()
    both = screening_loss(*as_torch, quick_config(tumor_loss_weight=0.5)).item()
    assert plain == pytest.approx(four_class, rel=1e-5)
    assert both == pytest.approx(four_class + 0.5 * binary, rel=1e-5)
    unweighted = screening_loss(*as_torch[:2], None, quick_config(tumor_loss_weight=1.0))
    assert unweighted.item() == pytest.approx(
        log_loss(labels, torch.softmax(as_torch[0], 1).numpy()) +
        log_loss(tumour, tumor_score(logits)), rel=1e-5)
    trained = train_tiny(quick_config(epochs=2, tumor_loss_weight=1.0))
    assert trained.history[-1]["train_loss"] < trained.history[0]["train_loss"]


def test_focal_gamma_scales_each_image_by_its_miss_probability():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, (10, 4))
    labels = np.array([0, 1, 2, 3, 1, 2, 0, 3, 3, 1])
    weights = np.array([0.5, 1.0, 2.0, 1.5])
    # independent: numpy log-softmax, the focal term written out
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    true_log_p = log_p[np.arange(10), labels]
    w = weights[labels]
    expected = (w * (1 - np.exp(true_log_p)) ** 2 * -true_log_p).sum() / w.sum()
    as_torch = (torch.tensor(logits), torch.from_numpy(labels), torch.tensor(weights))
    focal = screening_loss(*as_torch, quick_config(focal_gamma=2.0)).item()
    plain = screening_loss(*as_torch, quick_config()).item()
    assert focal == pytest.approx(expected, rel=1e-9)
    assert focal < plain
    trained = train_tiny(quick_config(epochs=2, focal_gamma=2.0))
    assert trained.history[-1]["train_loss"] < trained.history[0]["train_loss"]


def test_bad_train_params_are_refused():
    with pytest.raises(TumorScreenError, match="imbalance"):
        TrainConfig.from_params({"imbalance": "focal_and_weights"})
    with pytest.raises(TumorScreenError, match="tumor_loss_weight"):
        TrainConfig.from_params({"tumor_loss_weight": -1.0})
    with pytest.raises(TumorScreenError, match="focal_gamma"):
        TrainConfig.from_params({"focal_gamma": -0.5})
    with pytest.raises(TumorScreenError, match="unknown train params"):
        TrainConfig.from_params({"learning_rate": 1})
    for bad in ({"clusters": 1}, {"cluster_power": 0.0}, {"cluster_power": 1.5}):
        with pytest.raises(TumorScreenError, match="clusters"):
            TrainConfig.from_params(bad)
    with pytest.raises(TumorScreenError, match="upweight_errors"):
        TrainConfig.from_params({"upweight_errors": 0.5})
    with pytest.raises(TumorScreenError, match="warmup_epochs"):
        TrainConfig.from_params({"upweight_errors": 3.0, "warmup_epochs": 0})
    for bad in ({"site_weight": -0.1}, {"site_per_batch": 0}):
        with pytest.raises(TumorScreenError, match="site_"):
            TrainConfig.from_params(bad)


@pytest.mark.parametrize(("key", "value"), [("rotation_deg", 90.0), ("scale", 0.5),
                                            ("translate", 0.3), ("flip_lr", 1.5)])
def test_implausible_augmentation_is_refused(key, value):
    with pytest.raises(TumorScreenError, match=key):
        AugmentConfig.from_params({key: value})


def test_flip_is_left_right_only_and_disabled_augmentation_is_identity():
    images = torch.rand(3, 1, 16, 16)
    mirror_only = AugmentConfig(flip_lr=1.0, rotation_deg=0, scale=0, translate=0, gamma=0,
                                contrast=0)
    flipped = augment_batch(images, mirror_only, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(flipped, images.flip(-1), atol=1e-5)
    off = AugmentConfig(enabled=False)
    assert augment_batch(images, off, torch.Generator()) is images


def test_augmented_images_stay_in_range_and_keep_top_and_bottom():
    images = torch.zeros(64, 1, 32, 32)
    images[:, :, :8] = 1.0  # bright top band
    moved = augment_batch(images, AugmentConfig(), torch.Generator().manual_seed(1))
    assert moved.shape == images.shape and moved.min() >= 0 and moved.max() <= 1
    assert (moved[:, :, :12].mean((1, 2, 3)) > moved[:, :, 20:].mean((1, 2, 3))).all()


def test_device_and_precision_resolution():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(TumorScreenError, match="precision"):
        resolve_precision("int8", CPU)
    with pytest.raises(TumorScreenError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TumorScreenError, match="CUDA is not available"):
            resolve_device("cuda")


def test_run_records_name_the_cpu_model_but_not_for_other_devices():
    assert describe_device(CPU)["name"] == cpu_model()
    assert describe_device(torch.device("mps"))["name"] == "mps"  # not the host's CPU


def test_raw_throughput_probe_leaves_the_model_untouched():
    model, _ = build_network(TINY, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert raw_images_per_second(model, 8, 32, CPU, "fp32", False, steps=2) > 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_probing_between_epochs_leaves_the_training_bit_for_bit_as_it_was():
    probed = train_tiny(quick_config(epochs=2, probe_steps=2))
    unprobed = train_tiny(quick_config(epochs=2, probe_steps=0))
    assert len(probed.raw_images_per_s) == 2 and min(probed.raw_images_per_s) > 0
    assert unprobed.raw_images_per_s == []
    assert [row["train_loss"] for row in probed.history] == \
        [row["train_loss"] for row in unprobed.history]
    for key, value in probed.model.state_dict().items():
        assert torch.equal(value, unprobed.model.state_dict()[key]), key


def test_label_smoothing_raises_the_floor_of_the_training_loss():
    plain = train_tiny(quick_config(epochs=4))
    smooth = train_tiny(quick_config(epochs=4, label_smoothing=0.2))
    assert smooth.history[-1]["train_loss"] > plain.history[-1]["train_loss"]


def test_frozen_early_stages_keep_their_weights_but_adapt_batchnorm_statistics():
    seed_everything(0)
    model, _ = build_network(TINY, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stem_weights = {f"backbone.{path}.{name}" for path in model.stages[0]
                    for name, _ in model.backbone.get_submodule(path).named_parameters()}
    fit(model, blobs(32, 0), blobs(16, 1), quick_config(epochs=2, freeze_stages=1), CPU, "fp32")
    after = model.state_dict()
    assert stem_weights and all(torch.equal(after[k], before[k]) for k in stem_weights)
    assert not torch.equal(after["backbone.1.running_mean"], before["backbone.1.running_mean"])
    assert not torch.equal(after["backbone.3.weight"], before["backbone.3.weight"])
    assert all(p.requires_grad for p in model.parameters()), "released after training"


def test_stage_lists_cover_every_backbone_and_refuse_too_many():
    for name in ("tiny_cnn", "efficientnet_lite0", "resnet18", "mobilenet_v3_small"):
        model, _ = build_network(name, 4, pretrained=False)
        stem = model.early_stage_parameters(1)
        assert stem and stem[0] is next(iter(model.backbone.parameters())), name
        everything = model.early_stage_parameters(len(model.stages))
        assert len({id(p) for p in everything}) == len(everything), name
        with pytest.raises(TumorScreenError, match="stages"):
            model.early_stage_parameters(len(model.stages) + 1)


def test_weight_average_is_what_val_scores_and_what_is_kept():
    live = train_tiny(quick_config(warmup_epochs=0, epochs=2, patience=5))
    averaged = train_tiny(quick_config(warmup_epochs=0, epochs=2, patience=5, ema_decay=0.9))
    seed_everything(0)
    start, _ = build_network(TINY, 4)

    def moved(result) -> float:
        return sum((a - b).abs().sum().item() for a, b in
                   zip(result.model.parameters(), start.parameters(), strict=True))

    # same seed and batches: the average trails the live weights, so it has moved less
    assert 0 < moved(averaged) < moved(live)
    assert averaged.history[0]["train_loss"] == live.history[0]["train_loss"]
    assert averaged.history[-1]["val_loss"] != live.history[-1]["val_loss"]
    val_images, val_labels = blobs(32, 1)
    rescored = evaluate_split(averaged.model, val_images, val_labels, CPU, "fp32",
                              quick_config())
    assert rescored["loss"] == pytest.approx(
        averaged.history[averaged.best_epoch]["val_loss"], rel=1e-6)
    with pytest.raises(TumorScreenError, match="ema_decay"):
        TrainConfig.from_params({"ema_decay": 1.0})


def test_average_states_is_the_mean_of_floats_and_keeps_the_last_counters():
    states = [{"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)},
              {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}]
    averaged = average_states(states)
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(averaged["n"], torch.tensor(7))


def test_batchnorm_statistics_are_recomputed_from_the_training_images():
    seed_everything(0)
    model, _ = build_network(TINY, 4)
    images, labels = blobs(64, 0)
    cfg = quick_config(batch_size=64)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)),
        batch_size=64)
    stem = model.backbone[1]
    stem.running_mean.fill_(5.0)
    recompute_batchnorm(model, loader, cfg, CPU, "fp32", torch.Generator().manual_seed(0))
    inputs = (to_input(torch.from_numpy(images), CPU, False) - model.mean) / model.std
    with torch.no_grad():
        expected = model.backbone[0](inputs)
    assert torch.allclose(stem.running_mean, expected.mean(dim=(0, 2, 3)), atol=1e-5)
    assert stem.momentum == 0.1 and model.training


def test_weight_soup_averages_the_weights_and_recounts_the_statistics():
    networks = []
    for seed in (0, 1):
        seed_everything(seed)
        networks.append(build_network(TINY, 4)[0])
    first, second = (network.state_dict() for network in networks)
    expected = {key: (first[key] + second[key]) / 2 for key in first
                if first[key].is_floating_point()}
    images, labels = blobs(64, 0)
    soup = weight_soup(networks, (images, labels), quick_config(batch_size=64), CPU, "fp32")
    weights = soup.state_dict()
    assert all(torch.equal(weights[key], value) for key, value in expected.items()
               if "running" not in key)
    inputs = (to_input(torch.from_numpy(images), CPU, False) - soup.mean) / soup.std
    with torch.no_grad():  # the stem's statistics are measured under the averaged stem
        stem_outputs = soup.backbone[0](inputs)
    torch.testing.assert_close(soup.backbone[1].running_mean, stem_outputs.mean(dim=(0, 2, 3)))
    assert not torch.allclose(soup.backbone[1].running_mean,
                              expected["backbone.1.running_mean"])
    assert not soup.training


def test_inference_batchnorm_statistics_are_measured_with_dropout_off():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Conv2d(1, 3, 3),
                                torch.nn.BatchNorm2d(3)).train()
    norm = model[2]
    norm.running_mean.fill_(5.0)
    images = np.random.default_rng(0).integers(0, 256, (64, 12, 12)).astype(np.uint8)
    inference_batchnorm_statistics(model, images, quick_config(batch_size=32), CPU, "fp32")
    with torch.no_grad():  # dropout off: the convolution sees the images as they are
        halves = model[1](to_input(torch.from_numpy(images), CPU, False)).split(32)
    means = torch.stack([half.mean(dim=(0, 2, 3)) for half in halves])
    variances = torch.stack([half.transpose(0, 1).flatten(1).var(dim=1) for half in halves])
    torch.testing.assert_close(norm.running_mean, means.mean(0))
    torch.testing.assert_close(norm.running_var, variances.mean(0))
    assert norm.momentum == 0.1 and not model.training and not norm.training


def test_inference_batchnorm_changes_only_the_kept_statistics():
    plain = train_tiny(quick_config(epochs=2))
    measured = train_tiny(quick_config(epochs=2, inference_batchnorm=True))
    assert same_curves(plain, measured)
    before, after = plain.model.state_dict(), measured.model.state_dict()
    statistics = [key for key in before if key.endswith(("running_mean", "running_var"))]
    assert statistics and all(not torch.equal(before[k], after[k]) for k in statistics)
    assert all(torch.equal(before[k], after[k]) for k in before
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    rescored = evaluate_split(measured.model, *blobs(32, 1), CPU, "fp32", quick_config())
    assert rescored == pytest.approx(measured.val_scores, rel=1e-6)


def test_averaged_weights_compete_with_the_best_epoch_on_val():
    single = train_tiny(quick_config(epochs=4, lr=0.01))
    result = train_tiny(quick_config(epochs=4, lr=0.01, average_epochs=3))
    assert same_curves(result, single)  # the average changes nothing before the end
    # at this rate the last three epochs' average beats every single epoch on val
    assert result.averaged_epochs == [2, 3, 4]
    assert result.val_scores["loss"] < min(row["val_loss"] for row in result.history)
    assert result.average_scores == result.val_scores and single.average_scores is None
    rescored = evaluate_split(result.model, *blobs(32, 1), CPU, "fp32", quick_config())
    assert rescored["loss"] == pytest.approx(result.val_scores["loss"], rel=1e-6)
    # at a rate that overshoots, one epoch is already better, and it is kept
    overshoot = train_tiny(quick_config(epochs=4, lr=0.05, average_epochs=3))
    assert overshoot.averaged_epochs == []
    assert overshoot.average_scores["loss"] > overshoot.val_scores["loss"]
    assert overshoot.val_scores["loss"] == overshoot.history[overshoot.best_epoch]["val_loss"]
    for bad in ({"average_epochs": -1}, {"average_epochs": 3, "ema_decay": 0.9}):
        with pytest.raises(TumorScreenError, match="average_epochs"):
            TrainConfig.from_params(bad)


def test_keep_by_chooses_the_epoch_on_the_val_loss_after_temperature():
    images, labels = blobs(32, 1)
    labels[:6] = (labels[:6] + 1) % 4  # wrong labels: no temperature drives the loss to 0

    def train_noisy_val(**changes):
        seed_everything(0)
        model, _ = build_network(TINY, 4)
        return fit(model, blobs(64, 0), (images, labels),
                   quick_config(epochs=6, lr=0.01, patience=6, **changes), CPU, "fp32")

    plain, calibrated = train_noisy_val(), train_noisy_val(keep_by="calibrated_loss")
    for row in plain.history:
        assert 0 < row["val_calibrated_loss"] <= row["val_loss"] + 1e-9
    assert same_curves(plain, calibrated)
    by = {key: int(np.argmin([row[f"val_{key}"] for row in plain.history]))
          for key in ("loss", "calibrated_loss")}
    assert by["loss"] != by["calibrated_loss"]  # here the two disagree
    assert (plain.best_epoch, calibrated.best_epoch) == (by["loss"], by["calibrated_loss"])
    with pytest.raises(TumorScreenError, match="keep_by"):
        TrainConfig.from_params({"keep_by": "accuracy"})


def test_val_scores_include_the_tumour_auroc_only_when_both_sides_are_present():
    seed_everything(0)
    model, _ = build_network(TINY, 4)
    images, labels = blobs(32, 1)
    scores = evaluate_split(model, images, labels, CPU, "fp32", quick_config())
    logits = predict_logits(model, images, CPU, "fp32", 16, False)
    assert scores["tumor_auroc"] == pytest.approx(
        roc_auc_score(labels != NO_TUMOR, tumor_score(logits)), rel=1e-9)
    tumours_only = labels != NO_TUMOR
    scores = evaluate_split(model, images[tumours_only], labels[tumours_only], CPU, "fp32",
                            quick_config())
    assert "tumor_auroc" not in scores and scores["loss"] > 0


def test_site_rows_of_a_batch_add_only_their_tumour_cross_entropy():
    rng = np.random.default_rng(11)
    logits = rng.normal(0, 2, (10, 4))
    labels, site = np.array([0, 1, 2, 3, 1, 2]), np.array([1, 0, 1, 1])
    # independent: sklearn's log losses of the 4-class rows and of the site rows' scores
    four_class = log_loss(labels, torch.softmax(torch.tensor(logits[:6]), 1).numpy(),
                          labels=range(4))
    binary = log_loss(site, tumor_score(logits[6:]), labels=[0, 1])
    loss = model_loss(torch.nn.Identity(), torch.tensor(logits), torch.from_numpy(labels),
                      None, quick_config(site_weight=0.3), None, CPU, "fp32",
                      torch.from_numpy(site))
    assert loss.item() == pytest.approx(four_class + 0.3 * binary, rel=1e-6)


def test_random_batch_draws_rows_with_their_labels():
    images = np.stack([np.full((8, 8), 10 * k, np.uint8) for k in range(5)])
    inputs, labels = random_batch(images, np.arange(5), 12, AugmentConfig(enabled=False), CPU,
                                  False, torch.Generator().manual_seed(0))
    assert inputs.shape == (12, 1, 8, 8) and labels.shape == (12,)
    expected = to_input(torch.from_numpy(images[labels.numpy()]), CPU, False)
    assert torch.equal(inputs, expected)


def healthy_look_with_mark(count: int, seed: int, tumour: bool
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Site images that look like the blobs' healthy class; a tumour adds a small grey mark
    in the centre, which no internal image has (as a T2 tumour beside T1 tumours)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (count, 32, 32)).astype(np.uint8)
    y, x = divmod(NO_TUMOR, 2)
    images[:, y * 16 + 4:y * 16 + 12, x * 16 + 4:x * 16 + 12] = 230
    if tumour:
        images[:, 14:18, 14:18] = 140
    return images, np.full(count, int(tumour), np.int64)


def test_site_images_teach_the_tumour_score_a_look_the_internal_set_lacks():
    def marked_site(seed: int) -> list[np.ndarray]:
        return [np.concatenate(parts) for parts in zip(
            healthy_look_with_mark(16, seed, True), healthy_look_with_mark(16, seed + 1, False),
            strict=True)]
    site, unseen = marked_site(0), marked_site(2)

    def unseen_loss(site_weight: float) -> tuple[float, float]:
        seed_everything(0)
        model, _ = build_network(TINY, 4)
        result = fit(model, blobs(64, 0), blobs(32, 1), quick_config(site_weight=site_weight),
                     CPU, "fp32", site=None if site_weight == 0 else tuple(site))
        logits = predict_logits(result.model, unseen[0], CPU, "fp32", 16)
        return tumor_nll(logits, unseen[1].astype(bool)), result.val_scores["accuracy"]

    without, _ = unseen_loss(0.0)
    joint, internal_accuracy = unseen_loss(1.0)
    assert joint < np.log(2) < without  # worse than a coin without the site, far better with
    assert internal_accuracy >= 0.9  # the 4-class task is still learnt
    with pytest.raises(TumorScreenError, match="site"):
        fit(build_network(TINY, 4)[0], blobs(16, 0), blobs(8, 1),
            quick_config(site_weight=1.0), CPU, "fp32")
