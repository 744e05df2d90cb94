"""report: the offline HTML dashboard (plotly, JavaScript embedded) from every stage's
metrics, curves and plot tables, with the audit gallery; links point at sibling reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages._run import run_stage
from tumorscreen.records import read_json
from tumorscreen.report.dashboard import DashboardInputs, render_dashboard

METRICS = ("download", "qc", "split", "preprocess", "train", "calibration", "evaluate",
           "finetune", "threshold", "external", "audit")
CURVES = Path("plots/train/plots/metrics")
TABLES = {"reliability_before": "plots/calibrate/reliability_before.csv",
          "reliability_after": "plots/calibrate/reliability_after.csv",
          "roc": "plots/evaluate/roc.csv",
          "external_roc_base": "plots/external/roc_base.csv",
          "external_roc_finetuned": "plots/external/roc_finetuned.csv"}
AUDIT = Path("plots/audit")
OUT = Path("plots/report.html")
LINKS = {"QC gallery": "qc_gallery.html", "preprocessing panel": "preprocess_panel.html",
         "site comparison table": "external/comparison.html"}  # relative to OUT


def report(params: dict) -> None:
    inputs = DashboardInputs(
        metrics={name: read_json(f"metrics/{name}.json") for name in METRICS},
        curves={path.stem: pd.read_csv(path, sep="\t") for path in sorted(CURVES.glob("*.tsv"))},
        tables={name: pd.read_csv(path) for name, path in TABLES.items()},
        cases={folder.name: sorted((folder / "cases").iterdir(), key=lambda p: p.name)
               for folder in sorted(AUDIT.iterdir()) if (folder / "cases").is_dir()},
        links=LINKS)
    OUT.write_text(render_dashboard(inputs), encoding="utf-8")


if __name__ == "__main__":
    run_stage("report", report)
