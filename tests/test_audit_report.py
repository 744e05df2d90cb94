"""The audit and report stages on the tiny end-to-end run, and the dashboard in a browser."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.browser import CHROMIUM, render
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.models.predict import checkpoint_logits
from tumorscreen.models.score import tumor_score
from tumorscreen.policy.matrix import Variant
from tumorscreen.report.dashboard import SECTIONS
from tumorscreen.train.data import labelled_split, site_split

CASE_FILES = {"original.png", "input.png", "cam_tumour.png", "cam_predicted.png",
              "metadata.json"}
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("TUMORSCREEN_REQUIRE_BROWSER"),
    reason="Chromium is not installed (Debian package chromium); .ci/run installs it")


def read(repo: Path, name: str) -> dict:
    return json.loads((repo / name).read_text())


def test_audit_writes_every_case_file_and_one_row_per_image(repo, project_params):
    audit, cfg = read(repo, "metrics/audit.json"), project_params["audit"]
    sizes = {"test": len(labelled_split(repo / "data/preprocessed", "test")),
             "holdout": len(site_split(repo / "data/preprocessed", "holdout"))}
    for name, size in sizes.items():
        folder = repo / "plots/audit" / name
        details = pd.read_csv(folder / "error_details.csv")
        assert len(details) == size == audit["sets"][name]["images"]
        assert details["id"].is_unique
        cases = sorted((folder / "cases").iterdir())
        for kind in ("fn", "fp", "tp"):
            limit = cfg["true_positives"] if kind == "tp" else cfg["top_n"]
            chosen = [c for c in cases if c.name.startswith(kind + "-")]
            assert len(chosen) == min(limit, int((details["outcome"] == kind).sum()))
        assert cases, name
        for case in cases:
            assert {p.name for p in case.iterdir()} == CASE_FILES, case
            meta = read(case, "metadata.json")
            assert {"case", "qc", "preprocessing", "temperature", "threshold", "policy",
                    "target_layer", "mask_source"} <= set(meta)
            assert {"tumour_score", "focus_tumour", "lift_tumour", "outcome"} <= set(meta["case"])
            assert meta["qc"]["qc_decision"] in {"pass", "flag"}
        summary = read(folder, "error_summary.json")
        assert summary["correct"] + summary["wrong"] == size
        assert len(summary["top_confident_errors"]) == min(cfg["top_k_errors"], summary["wrong"])
        focus = audit["sets"][name]["focus"]["focus_tumour"]
        assert focus["correct"]["count"] + focus["wrong"]["count"] + \
            focus["correct"]["undefined"] + focus["wrong"]["undefined"] == size
        assert details["focus_tumour"].dropna().between(0, 1).all()


def test_audit_scores_and_outcomes_match_the_evaluation_stages(repo, project_params):
    """The audited holdout decisions are the external matrix row's; the scores are the
    checkpoint's own."""
    row_key = Variant(project_params["audit"]["model"], False,
                      project_params["audit"]["calibrated"]).key
    row = next(r for r in read(repo, "metrics/external.json")["rows"] if r["key"] == row_key)
    assert read(repo, "metrics/audit.json")["sets"]["holdout"]["outcomes"] == row["counts"]
    details = pd.read_csv(repo / "plots/audit/holdout/error_details.csv")
    holdout = site_split(repo / "data/preprocessed", "holdout")
    model, config = load_checkpoint(repo / "models/finetuned")
    scores = tumor_score(checkpoint_logits(model, config, holdout.images, torch.device("cpu")),
                         row["temperature"])
    np.testing.assert_allclose(details["tumour_score"], scores, atol=1e-5)


def test_report_is_self_contained_with_every_section(repo):
    page = (repo / "plots/report.html").read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    assert "Not available" not in page
    assert "<script src=" not in page and "<link" not in page  # nothing fetched
    assert page.count('class="case ') == sum(
        len(list((repo / "plots/audit" / name / "cases").iterdir())) for name in
        ("test", "holdout"))


@needs_browser
def test_dashboard_renders_in_chromium_without_errors(repo, tmp_path):
    page = repo / "plots/report.html"
    shown = render(page, tmp_path)
    assert shown.errors == []
    assert shown.plots_drawn == page.read_text(encoding="utf-8").count('id="fig-')
    assert shown.plots_drawn >= 8
    for key in SECTIONS:
        assert f'<section id="{key}">' in shown.dom
    grey = shown.screenshot.mean(axis=2)
    assert grey.std() > 20 and (grey < 200).mean() > 0.02, "the screenshot is blank"


@needs_browser
def test_browser_check_reports_script_errors_and_blank_pages(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><html><head></head><body><script>undefinedCall()"
                      "</script><img src='missing.png'></body></html>")
    shown = render(broken, tmp_path / "chromium")
    assert any("undefinedCall" in error for error in shown.errors)
    assert any("missing.png" in error for error in shown.errors)
    assert shown.plots_drawn == 0 and shown.screenshot.mean(axis=2).std() < 20


def test_dashboard_marks_missing_inputs_and_undefined_rates():
    from tumorscreen.report.dashboard import DashboardInputs, render_dashboard

    undefined = {"value": None, "low": None, "high": None}
    page = render_dashboard(DashboardInputs(metrics={"external": {
        "holdout_images": 0, "holdout_tumour": 0, "rows": [{
            "key": "base", "auroc": undefined, "sensitivity": undefined,
            "specificity": undefined, "threshold": 0.3,
            "counts": {"tp": 0, "fp": 0, "tn": 0, "fn": 0}}]}}))
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    # every section but the external matrix, plus that section's missing ROC curves
    assert page.count("Not available") == len(SECTIONS)
    assert "Not available: the Holdout ROC" in page
    assert "<td>-</td>" in page
