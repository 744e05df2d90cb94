"""The offline dashboard: one self-contained HTML file built with plotly, its JavaScript
embedded once (no CDN), with a section per part of the pipeline.

Every figure is read from a stage's outputs; nothing here computes a metric.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tumorscreen.records import read_json
from tumorscreen.report.gallery import image_data_uri

SECTIONS = {"data": "Data and quality control", "leakage": "Leakage found and removed",
            "training": "Training curves", "calibration": "Calibration before and after",
            "internal": "Internal test", "external": "External validation",
            "policy": "Threshold policy and review band", "audit": "Audit"}
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", "tumor_auroc",
            "tumor_sensitivity", "tumor_specificity")
CASE_PICTURES = ("input", "cam_tumour", "cam_predicted")
STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
nav{position:sticky;top:0;background:#233;padding:.5rem 1rem;z-index:9}
nav a{color:#fff;margin-right:1rem;text-decoration:none;font-size:14px}
main{padding:0 1.5rem 2rem}section{background:#fff;border:1px solid #ddd;border-radius:6px;
margin:1rem 0;padding:.5rem 1rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:13px;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eef}
.note{color:#555;font-size:13px}.grid{display:flex;flex-wrap:wrap;gap:.6rem}
.case{border:1px solid #ddd;border-radius:4px;padding:4px;font-size:11px;width:396px}
.case img{width:128px;height:128px;margin-right:2px;background:#000}
.fn{border-color:#c33}.fp{border-color:#c80}.tp{border-color:#393}
"""


@dataclass
class DashboardInputs:
    """What the report stage read: metrics JSON by stage name, per-epoch curves, plot tables
    and the audit's case folders. Missing pieces are shown as missing, never invented."""

    metrics: dict[str, dict[str, Any]]
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)  # name -> step, value
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # plot CSVs by name
    cases: dict[str, list[Path]] = field(default_factory=dict)  # audit set -> case folders
    links: dict[str, str] = field(default_factory=dict)  # label -> relative URL


def _fig(fig: go.Figure, name: str) -> str:
    fig.update_layout(height=360, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                       config={"displaylogo": False, "responsive": True})


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}",
                         escape=True)


def _ci(figure: dict[str, float | None] | None) -> str:
    if not figure or figure.get("value") is None:
        return "-"  # undefined, e.g. a rate over zero cases
    return f"{figure['value']:.3f} ({figure['low']:.3f}-{figure['high']:.3f})"


def _missing(what: str) -> str:
    return f'<p class="note">Not available: {html.escape(what)} was not produced.</p>'


def data_section(inputs: DashboardInputs) -> str:
    qc, download = inputs.metrics.get("qc"), inputs.metrics.get("download")
    if not qc or not download:
        return _missing("metrics/qc.json or metrics/download.json")
    counts = pd.DataFrame(qc["by_dataset"]).fillna(0).astype(int)
    fig = go.Figure([go.Bar(name=decision, x=list(counts.columns), y=counts.loc[decision])
                     for decision in counts.index])
    fig.update_layout(barmode="stack", title="QC decisions per dataset")
    links = " · ".join(f'<a href="{html.escape(url)}">{html.escape(label)}</a>'
                       for label, url in inputs.links.items())
    files = pd.DataFrame([(dataset, label, n) for dataset, labels in
                          download["by_dataset_label"].items() for label, n in labels.items()],
                         columns=["dataset", "label", "files"])
    return (f"<p>{download['files']} files downloaded; {links}</p>{_table(files)}"
            f"{_fig(fig, 'qc')}")


def leakage_section(inputs: DashboardInputs) -> str:
    split = inputs.metrics.get("split")
    if not split:
        return _missing("metrics/split.json")
    pairs = pd.DataFrame([split["near_duplicate_pairs"]])
    removed = pd.DataFrame([split["removed"]])
    own = split.get("own_folders_leakage", {})
    leaked = own.get("testing_images_with_training_near_duplicate", "-")
    return (f"<p>Near-duplicate pairs found (perceptual hash, then correlation):</p>"
            f"{_table(pairs)}<p>Images removed before splitting:</p>{_table(removed)}"
            f"<p>After grouping, leakage across the new splits: "
            f"<b>{split['leakage_count']}</b> (identical files and near-duplicate pairs).</p>"
            f"<p>The dataset's own folders: {leaked}"
            f" of {own.get('testing_images', '-')} Testing images have a near-duplicate in "
            f"Training (share {own.get('testing_fraction_leaked', '-')}); this project's "
            f"test split does not use that folder split.</p>")


def _curve_figure(curves: dict[str, pd.DataFrame], names: list[str], title: str,
                  key: str) -> str:
    fig = go.Figure([go.Scatter(x=curves[n]["step"], y=curves[n].iloc[:, -1], name=n,
                                mode="lines+markers") for n in names if n in curves])
    fig.update_layout(title=title, xaxis_title="epoch")
    return _fig(fig, key)


def training_section(inputs: DashboardInputs) -> str:
    train = inputs.metrics.get("train")
    if not train or not inputs.curves:
        return _missing("metrics/train.json or the dvclive curves in plots/train")
    summary = pd.DataFrame([{"best epoch": train["best_epoch"],
                             "epochs run": train["epochs_run"],
                             "val loss": train["val"]["loss"],
                             "val accuracy": train["val"]["accuracy"],
                             "init": train.get("init", "-")}])
    return (_table(summary)
            + _curve_figure(inputs.curves, ["train_loss", "val_loss"], "Loss", "loss")
            + _curve_figure(inputs.curves, ["val_accuracy", "val_macro_f1"],
                            "Validation accuracy and macro-F1", "val"))


def calibration_section(inputs: DashboardInputs) -> str:
    calibration = inputs.metrics.get("calibration")
    if not calibration:
        return _missing("metrics/calibration.json")
    rows = pd.DataFrame({when: calibration[when] for when in ("before", "after")}).T
    rows.insert(0, "", rows.index)
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], name="perfect", mode="lines",
                                line={"dash": "dot", "color": "grey"})])
    for when in ("before", "after"):
        table = inputs.tables.get(f"reliability_{when}")
        if table is not None:
            fig.add_trace(go.Scatter(x=table["confidence"], y=table["accuracy"], name=when,
                                     mode="lines+markers"))
    fig.update_layout(title="Reliability on val", xaxis_title="confidence",
                      yaxis_title="accuracy")
    return (f"<p>Temperature T = {calibration['temperature']:.3f}, fitted on val "
            f"({calibration['images']} images) by NLL.</p>{_table(rows)}"
            f"{_fig(fig, 'reliability')}")


def _roc_figure(inputs: DashboardInputs, curves: dict[str, str], title: str, key: str) -> str:
    """One ROC figure from the plot tables named in ``curves`` (table name -> legend)."""
    fig = go.Figure([go.Scatter(x=inputs.tables[name]["fpr"], y=inputs.tables[name]["tpr"],
                                name=label) for name, label in curves.items()
                     if name in inputs.tables])
    fig.update_layout(title=title, xaxis_title="false-positive rate",
                      yaxis_title="true-positive rate")
    return _fig(fig, key) if fig.data else _missing(f"the {title} curves")


def internal_section(inputs: DashboardInputs) -> str:
    evaluation = inputs.metrics.get("evaluate")
    if not evaluation:
        return _missing("metrics/evaluate.json")
    test, leaky = evaluation["test"], evaluation["leaky_testing_folder"]
    rows = pd.DataFrame({"figure": HEADLINE,
                         "leak-free test": [_ci(test["headline"].get(k)) for k in HEADLINE],
                         "leaky Testing folder": [_ci(leaky["headline"].get(k))
                                                  for k in HEADLINE]})
    classes = list(test["per_class"])
    heat = go.Figure(go.Heatmap(z=test["confusion"], x=classes, y=classes, colorscale="Blues",
                                text=test["confusion"], texttemplate="%{text}"))
    heat.update_layout(title="Confusion on the leak-free test (rows: actual)",
                       xaxis_title="predicted", yaxis={"autorange": "reversed"})
    roc = _roc_figure(inputs, {"roc": "tumour vs healthy"}, "Tumour vs healthy ROC",
                      "internal-roc")
    return (f"<p>{test['images']} test images, {test['confidence_level']:.0%} bootstrap CIs "
            f"({test['bootstrap_resamples']} resamples). Leaky column: "
            f"{html.escape(leaky['note'])}.</p>"
            f"{_table(rows)}{_fig(heat, 'confusion')}{roc}")


def external_section(inputs: DashboardInputs) -> str:
    external = inputs.metrics.get("external")
    if not external:
        return _missing("metrics/external.json")
    rows = pd.DataFrame([{"row": r["key"], "AUROC": _ci(r["auroc"]),
                          "sensitivity": _ci(r["sensitivity"]),
                          "specificity": _ci(r["specificity"]), "threshold": r["threshold"],
                          "TP/FP/TN/FN": "/".join(str(r["counts"][k]) for k in
                                                  ("tp", "fp", "tn", "fn"))}
                         for r in external["rows"]])
    roc = _roc_figure(inputs, {f"external_roc_{m}": m for m in ("base", "finetuned")},
                      "Holdout ROC (calibrated, no TTA)", "external-roc")
    return (f"<p>Holdout: {external['holdout_images']} images, {external['holdout_tumour']} "
            f"with a tumour; every row at the threshold its policy chose on tune "
            f"(Wilson {external['rows'][0]['sensitivity'].get('confidence', 0.95):.0%} CIs for "
            f"rates, bootstrap for AUROC).</p>{_table(rows)}{roc}")


def policy_section(inputs: DashboardInputs) -> str:
    fitted, external = inputs.metrics.get("threshold"), inputs.metrics.get("external")
    if not fitted or not external:
        return _missing("metrics/threshold.json or metrics/external.json")
    rows = pd.DataFrame([{"row": r["key"], "threshold": r["threshold"],
                          "band low": r["review"]["band"][0], "band high": r["review"]["band"][1],
                          "holdout coverage": r["review"]["coverage"],
                          "deferred tumour": r["review"]["deferred"]["tumour"],
                          "deferred healthy": r["review"]["deferred"]["healthy"],
                          "accepted sensitivity": _ci(r["review"]["accepted"]["sensitivity"]),
                          "accepted specificity": _ci(r["review"]["accepted"]["specificity"])}
                         for r in external["rows"]])
    inputs_text = ", ".join(f"{k} = {v}" for k, v in fitted["inputs"].items())
    return (f"<p>Policy <b>{html.escape(fitted['policy'])}</b> ({html.escape(inputs_text)}), "
            f"fitted on the tune split ({fitted['tune_images']} images). Rule: "
            f"{html.escape(fitted['rule'])}. Review band targets: "
            f"{html.escape(str(fitted['review']))}.</p>{_table(rows)}")


def _focus_figure(audit: dict[str, Any]) -> str:
    fig = go.Figure()
    for name, report in audit["sets"].items():
        focus = report["focus"]["focus_tumour"]
        groups = [g for g in ("correct", "wrong", "fn", "fp") if "mean" in focus[g]]
        fig.add_trace(go.Bar(name=name, x=groups, y=[focus[g]["mean"] for g in groups]))
    fig.update_layout(barmode="group", title="Mean brain focus score (tumour-score CAM)",
                      yaxis_title="share of CAM energy in the brain mask")
    return _fig(fig, "focus")


def _case_card(folder: Path) -> str:
    meta = read_json(folder / "metadata.json")
    case = meta["case"]
    pictures = "".join(
        f'<img src="{image_data_uri(cv2.imread(str(folder / f"{name}.png")), 128, ".jpg")}" '
        f'title="{name}" alt="{name}">' for name in CASE_PICTURES
        if (folder / f"{name}.png").is_file())
    focus = case.get("focus_tumour")
    caption = (f"<b>{case['kind'].upper()} #{case['rank']}</b> {html.escape(case['id'])} · "
               f"truth {html.escape(str(case['label']))} · predicted "
               f"{html.escape(case['predicted_class'])} · score {case['tumour_score']:.3f} · "
               f"focus {'-' if focus is None or focus != focus else f'{focus:.2f}'}")
    return (f'<div class="case {case["kind"]}">{pictures}<div>{caption}</div>'
            f'<div class="note">input · tumour-score CAM · predicted-class CAM</div></div>')


def audit_section(inputs: DashboardInputs) -> str:
    audit = inputs.metrics.get("audit")
    if not audit:
        return _missing("metrics/audit.json")
    rows = pd.DataFrame([{"set": name, "model": r["model"], "images": r["images"],
                          "accuracy": r["accuracy"],
                          "mean confidence correct": r["mean_confidence"]["correct"],
                          "mean confidence wrong": r["mean_confidence"]["wrong"],
                          **{f"focus {g}": r["focus"]["focus_tumour"][g].get("mean")
                             for g in ("correct", "wrong")},
                          **{f"lift {g}": r["focus"]["lift_tumour"][g].get("mean")
                             for g in ("correct", "wrong")}}
                         for name, r in audit["sets"].items()])
    galleries = "".join(
        f"<h3>{html.escape(name)}</h3><div class='grid'>"
        f"{''.join(_case_card(folder) for folder in folders)}</div>"
        for name, folders in inputs.cases.items())
    return (f"<p>Brain mask: {html.escape(audit['mask_source'])}. Focus = share of the CAM's "
            f"energy inside it; lift = focus / the mask's area share.</p>{_table(rows)}"
            f"{_focus_figure(audit)}{galleries}")


RENDERERS: dict[str, Callable[[DashboardInputs], str]] = {
    "data": data_section, "leakage": leakage_section, "training": training_section,
    "calibration": calibration_section, "internal": internal_section,
    "external": external_section, "policy": policy_section, "audit": audit_section}


def render_dashboard(inputs: DashboardInputs) -> str:
    """The whole page: a navigation bar, then one <section id=...> per entry of SECTIONS."""
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS.items())
    body = "".join(f'<section id="{key}"><h2>{title}</h2>{RENDERERS[key](inputs)}</section>'
                   for key, title in SECTIONS.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>TumorScreen report"
            f"</title><style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
            f"<nav>{nav}</nav><main><h1>TumorScreen report</h1>{body}</main></body></html>")
