"""Grad-CAM against known answers and an analytic reference, the focus score's edge cases,
and the error analysis on hand-built predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit
from torch import nn

from benchmarks.neighbours import same_status_share
from tests.test_n4_mask import ellipse_head
from tumorscreen.explain.errors import error_summary, error_table, pick_cases, scored_set
from tumorscreen.explain.focus import audit_masks, focus_lift, focus_score, mask_area_share
from tumorscreen.explain.gradcam import (
    class_target,
    default_target_layer,
    grad_cam,
    predicted_class_target,
)
from tumorscreen.explain.neighbours import nearest_neighbours, neighbour_label_counts
from tumorscreen.models.backbones import build_network
from tumorscreen.models.predict import pooled_features, predict_logits
from tumorscreen.models.score import CLASSES, NO_TUMOR, tumor_logit, tumor_score

CPU = torch.device("cpu")
SIDE = 32


class Halves(nn.Module):
    """(N, 1, S, S) -> (N, 2, S, S): the image's left half, then its right half."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        left = torch.zeros_like(images)
        left[..., : images.shape[-1] // 2] = 1.0
        return torch.cat([images * left, images * (1 - left)], dim=1)


class LeftRightNet(nn.Module):
    """Class 0 reads only the left half, class 1 only the right half."""

    def __init__(self) -> None:
        super().__init__()
        self.features, self.pool = Halves(), nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(images)).flatten(1))


def blobs(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images with one bright square in each half; masks of the left and right squares."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, SIDE, SIDE), np.uint8)
    left, right = np.zeros(images.shape, bool), np.zeros(images.shape, bool)
    for i in range(count):
        y, x = rng.integers(2, SIDE - 8, 2)
        left[i, y:y + 6, x % 10 + 2:x % 10 + 8] = True
        y = rng.integers(2, SIDE - 8)
        right[i, y:y + 6, SIDE // 2 + x % 10 + 2:SIDE // 2 + x % 10 + 8] = True
    images[left | right] = 200
    return images, left, right


def test_cam_mass_falls_on_the_region_the_answer_depends_on():
    model = LeftRightNet()
    images, left, right = blobs(5)
    assert default_target_layer(model, SIDE) == "features"
    _, cams = grad_cam(model, images, {"left": class_target(0), "right": class_target(1)},
                       "features", CPU, batch_size=2)
    assert focus_score(cams["left"], left) == pytest.approx(np.ones(5))
    assert focus_score(cams["right"], right) == pytest.approx(np.ones(5))
    assert focus_score(cams["left"], right) == pytest.approx(np.zeros(5))


def test_grad_cam_equals_the_class_activation_map_of_a_pooled_linear_head():
    """With global average pooling then a linear layer, Grad-CAM is the CAM of Zhou et al.:
    ReLU(sum_k w_ck A_k) / (h w), computed here from the features directly."""
    torch.manual_seed(0)
    model, _ = build_network("tiny_cnn", len(CLASSES), pretrained=False)
    model.eval()
    images = np.random.default_rng(1).integers(0, 256, (6, 64, 64), dtype=np.uint8)
    layer = default_target_layer(model, 64)
    cut = int(layer.split(".")[-1]) + 1
    assert isinstance(model.backbone[cut], nn.AdaptiveAvgPool2d)
    logits, cams = grad_cam(model, images, {k: class_target(k) for k in range(4)}, layer, CPU,
                            batch_size=4)
    with torch.no_grad():
        inputs = torch.from_numpy(images).float().div(255).unsqueeze(1)
        features = model.backbone[:cut]((inputs - model.mean) / model.std)
        weights = model.backbone[-1].weight
        for k in range(4):
            cam = torch.relu(torch.einsum("c,nchw->nhw", weights[k], features))
            cam = nn.functional.interpolate(cam[:, None] / features[0, 0].numel(), size=(64, 64),
                                            mode="bilinear", align_corners=False)[:, 0]
            np.testing.assert_allclose(cams[k], cam.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(logits, predict_logits(model, images, CPU, "fp32"), atol=1e-5)
    assert all(p.requires_grad for p in model.parameters()), "parameter flags restored"


def test_tumour_score_cam_is_the_tumour_logit_cam_scaled_per_image():
    torch.manual_seed(2)
    model, _ = build_network("tiny_cnn", len(CLASSES), pretrained=False)
    images = np.random.default_rng(3).integers(0, 256, (5, 64, 64), dtype=np.uint8)
    layer = default_target_layer(model, 64)
    logits, cams = grad_cam(model, images, {
        "score": lambda out: tumor_score(out, 1.5), "logit": lambda out: tumor_logit(out, 1.5),
        "predicted": predicted_class_target}, layer, CPU, batch_size=3)
    slope = expit(tumor_logit(logits, 1.5)) * (1 - expit(tumor_logit(logits, 1.5)))
    np.testing.assert_allclose(cams["score"], cams["logit"] * slope[:, None, None], rtol=1e-4,
                               atol=1e-9)
    _, by_class = grad_cam(model, images, {k: class_target(k) for k in range(4)}, layer, CPU)
    for i, k in enumerate(logits.argmax(axis=1)):
        np.testing.assert_allclose(cams["predicted"][i], by_class[k][i], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(("backbone", "layer"), [("efficientnet_lite0", "backbone.bn2"),
                                                 ("resnet18", "backbone.layer4"),
                                                 ("mobilenet_v3_small", "backbone.features")])
def test_target_layer_is_the_last_spatial_feature_map(backbone, layer):
    model, _ = build_network(backbone, len(CLASSES), pretrained=False)
    assert default_target_layer(model, 64) == layer
    _, cams = grad_cam(model, np.full((2, 64, 64), 90, np.uint8),
                       {"predicted": predicted_class_target}, layer, CPU)
    assert cams["predicted"].shape == (2, 64, 64) and (cams["predicted"] >= 0).all()


def test_focus_score_edge_cases():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:6, 2:6] = True
    uniform = np.ones((1, 8, 8))
    share = mask_area_share(mask)
    assert share == pytest.approx([0.25])
    assert focus_score(uniform, mask) == pytest.approx(share)
    assert focus_lift(focus_score(uniform, mask), share) == pytest.approx([1.0])
    inside = np.where(mask, 3.0, -5.0)  # negative evidence is clipped, not subtracted
    assert focus_score(inside, mask) == pytest.approx([1.0])
    assert focus_lift(focus_score(inside, mask), share) == pytest.approx([4.0])
    empty = np.zeros_like(mask)
    assert focus_score(uniform, empty) == pytest.approx([0.0])
    assert np.isnan(focus_lift(focus_score(uniform, empty), mask_area_share(empty))).all()
    assert np.isnan(focus_score(np.zeros((1, 8, 8)), mask)).all()


def test_audit_masks_come_from_preprocess_or_from_the_same_mask_function():
    image, truth = ellipse_head(96)
    head = np.stack([image] * 2)
    whole_frame = np.ones(head.shape, bool)
    assert audit_masks(head, whole_frame, from_preprocess=True).all()
    recomputed = audit_masks(head, whole_frame, from_preprocess=False)
    assert (recomputed == truth).mean() > 0.97


def _logits(rows: list[list[float]]) -> np.ndarray:
    return np.log(np.asarray(rows, np.float64))


def test_error_table_and_summary_on_hand_built_predictions():
    # classes: glioma, meningioma, notumor, pituitary
    assert NO_TUMOR == 2
    probabilities = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.8, 0.1],
                     [0.1, 0.1, 0.7, 0.1], [0.9, 0.04, 0.03, 0.03]]
    labels = np.array([0, 0, 2, 1, 2])
    manifest = pd.DataFrame({"id": list("abcde"), "dataset": "internal", "split": "test",
                             "label": np.array(CLASSES)[labels], "path": "x"})
    table = error_table(scored_set(labels, manifest, _logits(probabilities), 1.0),
                        {"focus_tumour": np.linspace(0, 1, 5)})
    assert table["outcome"].tolist() == ["tp", "tp", "tn", "fn", "fp"]
    assert table["correct"].tolist() == [True, False, True, False, False]
    np.testing.assert_allclose(table["confidence"], [0.7, 0.6, 0.8, 0.7, 0.9])
    summary = error_summary(table, top_k=2)
    assert (summary["correct"], summary["wrong"]) == (2, 3)
    wrong_confidence = (0.6 + 0.7 + 0.9) / 3
    assert summary["mean_confidence"] == pytest.approx({"correct": 0.75, "wrong": wrong_confidence})
    assert [e["id"] for e in summary["top_confident_errors"]] == ["e", "d"]
    patterns = {(p["actual"], p["predicted"]): p["count"] for p in summary["confusion_patterns"]}
    assert patterns == {("glioma", "meningioma"): 1, ("meningioma", "notumor"): 1,
                        ("notumor", "glioma"): 1}
    cases = pick_cases(table, top_n=1, true_positives=1)
    assert list(zip(cases["kind"], cases["id"], strict=True)) == [("fn", "d"), ("fp", "e"),
                                                                   ("tp", "a")]


def test_site_decisions_use_the_threshold_and_count_deferred_cases():
    scores = np.array([0.95, 0.4, 0.2, 0.6])
    logits = np.stack([np.zeros(4), np.zeros(4), -np.log(scores / (1 - scores)), np.zeros(4)],
                      axis=1) - np.log(3)  # three equal tumour logits: score = p / (p + 1 - p)
    logits[:, NO_TUMOR] += np.log(3)
    manifest = pd.DataFrame({"id": list("abcd"), "dataset": "external", "split": "holdout",
                             "label": ["yes", "yes", "no", "no"], "path": "x"})
    table = error_table(scored_set(np.array([1, 1, 0, 0]), manifest, logits, 1.0,
                                   threshold=0.5, band=(0.3, 0.7), site=True), {})
    np.testing.assert_allclose(table["tumour_score"], scores)
    assert table["outcome"].tolist() == ["tp", "fn", "tn", "fp"]
    assert table["deferred"].tolist() == [False, True, False, True]
    np.testing.assert_allclose(table["confidence"], [0.95, 0.6, 0.8, 0.6])
    summary = error_summary(table, top_k=5)
    assert summary["wrong_among_accepted"] == 0 and summary["deferred"] == 2
    assert {(p["actual"], p["predicted"]) for p in summary["confusion_patterns"]} == {
        ("yes", "healthy"), ("no", "tumour")}


def test_summary_of_a_set_without_errors_has_no_error_confidence():
    manifest = pd.DataFrame({"id": ["a"], "dataset": "internal", "split": "test",
                             "label": ["glioma"], "path": "x"})
    table = error_table(scored_set(np.array([0]), manifest, _logits([[0.7, 0.1, 0.1, 0.1]]),
                                   1.0), {})
    assert error_summary(table, 3)["mean_confidence"]["wrong"] is None


def test_nearest_neighbours_rank_by_cosine_similarity_and_count_labels():
    reference = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [1.0, 0.1], [-1.0, 0.0]])
    labels = np.array([0, 2, 1, 0, 2])
    query = np.array([[5.0, 0.0], [0.0, 0.5]])
    order, similarity = nearest_neighbours(query, reference, 3)
    np.testing.assert_array_equal(order, [[0, 3, 2], [1, 2, 3]])
    np.testing.assert_allclose(similarity[:, 0], [1.0, 1.0])
    np.testing.assert_allclose(similarity[0, 1:], [1 / np.sqrt(1.01), 1 / np.sqrt(2)])
    np.testing.assert_array_equal(neighbour_label_counts(order, labels, 4),
                                  [[2, 1, 0, 0], [1, 1, 1, 0]])
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(query, reference, 6)


def test_pooled_features_are_what_the_head_reads():
    torch.manual_seed(0)
    model, _ = build_network("tiny_cnn", len(CLASSES), pretrained=False)
    model.eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    features = pooled_features(model, images, torch.device("cpu"), "fp32")
    head = model.backbone.get_submodule(model.head)
    assert features.shape == (5, head.in_features)
    logits = predict_logits(model, images, torch.device("cpu"), "fp32")
    recomputed = head(torch.from_numpy(features)).detach().numpy()
    np.testing.assert_allclose(recomputed, logits, rtol=1e-4, atol=1e-4)
    assert not model.training  # left as it was


def test_same_status_share_counts_a_tumour_neighbour_of_another_type_as_the_same_side():
    counts = np.array([[0, 3, 1, 0],    # meningioma: 3 of 4 neighbours are tumours
                       [2, 2, 0, 0],    # meningioma: all 4
                       [1, 0, 3, 0]])   # healthy: 3 of 4 healthy
    labels = np.array([1, 1, NO_TUMOR])
    assert same_status_share(counts, labels) == {"meningioma": 0.875, "notumor": 0.75}
