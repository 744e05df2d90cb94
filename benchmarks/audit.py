"""Audit and report benchmark: the whole synthetic DAG timed from scratch, then the audit and
the dashboard on the real data, run as users run them.

Usage: python -m benchmarks.audit [--workdir DIR] [--screenshot PNG]
1. a fresh git+DVC repo with the default params (synthetic): ``dvc repro`` of every stage,
   download through report, wall clock;
2. the real_cpu workspace of benchmarks.external (DIR, reused when it exists): ``dvc repro``
   (only the stages whose code or params changed rerun), then the focus scores and errors
   from metrics/audit.json, and the dashboard rendered in headless Chromium (errors, figures
   drawn, a screenshot at PNG).
Writes benchmarks/results/audit.json (small figures only; the audit outputs stay in DIR).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2

from benchmarks.external import stages_run
from benchmarks.profiles import REAL_CPU
from benchmarks.workspace import PROJECT, SHARED_DATA, make_dvc_repo, run_timed
from tests.browser import render
from tumorscreen.records import machine_record, package_versions, read_json, write_json

RESULT = PROJECT / "benchmarks" / "results" / "audit.json"
GROUPS = ("correct", "wrong", "tp", "tn", "fn", "fp")


def _mean(distribution: dict) -> float | None:
    return round(distribution["mean"], 4) if "mean" in distribution else None


def set_summary(report: dict) -> dict[str, Any]:
    """Focus, lift and error figures of one audited set."""
    focus = report["focus"]
    return {"model": report["model"], "images": report["images"],
            "accuracy": round(report["accuracy"], 4), "outcomes": report["outcomes"],
            "mean_confidence": {k: None if v is None else round(v, 4)
                                for k, v in report["mean_confidence"].items()},
            **{column: {group: {"mean": _mean(focus[column][group]),
                                "count": focus[column][group]["count"]} for group in GROUPS}
               for column in ("focus_tumour", "lift_tumour", "focus_predicted",
                              "lift_predicted")},
            "mask_share_mean": _mean(focus["mask_share"]["all"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    dvc = (sys.executable, "-m", "dvc")
    with tempfile.TemporaryDirectory(prefix="tumorscreen-synthetic-") as tmp:
        synthetic = make_dvc_repo(Path(tmp), {})
        synthetic_seconds, output = run_timed(synthetic, *dvc, "repro")
        synthetic_stages = stages_run(output)
    overrides = {**REAL_CPU,
                 "download.internal.local": str(SHARED_DATA / "brain-tumor-mri-224.zip"),
                 "download.external.local": str(SHARED_DATA / "navoneel-brain-mri.zip")}
    reused = (args.workdir / ".dvc").is_dir()
    root = make_dvc_repo(args.workdir, overrides)
    repro_seconds, output = run_timed(root, *dvc, "repro")
    audit = read_json(root / "metrics/audit.json")
    shown = render(root / "plots/report.html", Path(tempfile.mkdtemp(prefix="chromium-")),
                   size=(1400, 9000))
    screenshot = args.screenshot or root / "report.png"
    cv2.imwrite(str(screenshot), shown.screenshot)
    results = {
        "machine": machine_record(),
        "versions": package_versions(),
        "synthetic_repro": {"minutes": round(synthetic_seconds / 60, 2),
                            "stages_run": synthetic_stages},
        "real": {"profile": "real_cpu", "reused_workspace": reused,
                 "repro_minutes": round(repro_seconds / 60, 2),
                 "repro_stages_run": stages_run(output),
                 "mask_source": audit["mask_source"],
                 "target_layer": audit["sets"]["holdout"]["target_layer"],
                 "policy": audit["sets"]["holdout"]["policy"],
                 "sets": {name: set_summary(report) for name, report in audit["sets"].items()},
                 "dashboard": {"bytes": (root / "plots/report.html").stat().st_size,
                               "browser_errors": len(shown.errors),
                               "figures_drawn": shown.plots_drawn}}}
    write_json(RESULT, results)
    print(json.dumps({name: {k: s[k] for k in ("accuracy", "focus_tumour", "lift_tumour")}
                      for name, s in results["real"]["sets"].items()}, indent=1))
    print(f"screenshot: {screenshot}; synthetic repro {results['synthetic_repro']['minutes']} min")


if __name__ == "__main__":
    main()
