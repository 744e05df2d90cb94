"""Fill the README's results blocks from benchmarks/results/*.json (no figure typed by hand).

Usage: python -m benchmarks.update_readme      (rewrites README.md in place)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
RESULTS = PROJECT / "benchmarks" / "results"


def data_layer_block(result: dict) -> str:
    """Markdown table of the data-layer benchmark."""
    own = result["own_folders_leakage"]
    pairs = result["near_duplicate_pairs"]
    removed = result["removed"]
    rows = [
        ("images in the QC manifest", f"{result['images_in_qc_manifest']:,}"),
        ("QC decisions",
         ", ".join(f"{k} {v:,}" for k, v in sorted(result["qc_decisions"].items()))),
        ("near-duplicate groups (multi-member / largest)",
         f"{result['groups']['count']:,} ({result['groups']['multi_member']:,} / "
         f"{result['groups']['largest']})"),
        ("verified pairs: within a folder / across folders / across datasets",
         f"{pairs['within_folder']:,} / {pairs['across_folders']:,} / "
         f"{pairs['across_datasets']:,} (of {pairs['candidates']:,} pHash candidates)"),
        ("dataset's own Testing images with a near-duplicate in its Training folder",
         f"{own['testing_images_with_training_near_duplicate']:,} of "
         f"{own['testing_images']:,} ({own['testing_fraction_leaked']:.1%})"),
        ("external images with a near-duplicate in the internal set",
         f"{own['external_images_with_internal_near_duplicate']:,} of "
         f"{own['external_images']:,}"),
        ("removed: internal twins of external images / label-conflict images",
         f"{removed.get('internal_twin_of_external', 0):,} / "
         f"{removed.get('label_conflict', 0):,}"),
        ("leakage count on the produced splits", str(result["leakage_count"])),
        ("wall time: download / qc / dedup / split (total)",
         " / ".join(f"{result['seconds'][s]} s" for s in ("download", "qc", "dedup", "split"))
         + f" ({result['seconds']['total']} s, {result['machine']['cpus']} CPUs)"),
    ]
    lines = ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _spread(quantiles: dict) -> str:
    return f"{quantiles['p50']} ({quantiles['p5']}-{quantiles['p95']})"


def preprocess_block(result: dict) -> str:
    """Markdown table of the preprocessing benchmark."""
    flags = result["by_reason"].get("flag", {})
    steps = result["per_step_mean_ms"]
    seconds = result["seconds"]
    rows = [
        ("images preprocessed, model input", f"{result['images']:,}, {result['size']} px"),
        ("decisions", ", ".join(f"{k} {v:,}" for k, v in sorted(result["decisions"].items()))),
        ("mask flags by rule", ", ".join(f"{k} {v}" for k, v in sorted(flags.items()))
         or "none"),
        ("Nyul landmarks fitted on (train images)", f"{result['nyul_fitted_on']:,}"),
        ("mask fraction of the frame, median (5th-95th percentile)",
         _spread(result["mask_fraction"])),
        ("N4 bias field max/min inside the mask, median (5th-95th percentile)",
         _spread(result["n4_bias_max_over_min"])),
        ("mean ms per image: " + " / ".join(steps), " / ".join(str(v) for v in steps.values())),
        (f"wall time: pool of {result['pool_workers']} / 1 worker (speed-up)",
         f"{seconds['preprocess_pool']} s / {seconds['preprocess_1_worker']} s "
         f"({result['pool_speedup']}x, {result['machine']['cpus']} CPUs)"),
    ]
    lines = ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def cpu_scaling_block(result: dict) -> str:
    """One line: the machine's own pool ceiling on pure CPU work."""
    runs = ", ".join(f"{r}x" for r in result["speedups"])
    return (f"Pure CPU work on this machine ({result['cpus']} CPUs) runs "
            f"{result['median_speedup']}x faster on {result['workers']} workers than on one "
            f"(median of interleaved runs: "
            f"{runs}), from `python -m benchmarks.cpu_scaling`.")


BLOCKS = {"data_layer": data_layer_block, "preprocess": preprocess_block,
          "cpu_scaling": cpu_scaling_block}


def render(readme: str) -> str:
    """``readme`` with every results block replaced by its rendering from the JSON."""
    for name, block in BLOCKS.items():
        result = json.loads((RESULTS / f"{name}.json").read_text())
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        readme = pattern.sub(lambda m, r=result, b=block: m.group(1) + b(r) + "\n" + m.group(2),
                             readme)
    return readme


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
