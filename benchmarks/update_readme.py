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


def cpus_text(machine: dict) -> str:
    """The CPU count ("2 CPUs"), with the CPU model when the result records one."""
    model = machine.get("cpu_model")
    return f"{machine['cpus']} CPUs" + (f", {model}" if model else "")


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
         + f" ({result['seconds']['total']} s, {cpus_text(result['machine'])})"),
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
         f"({result['pool_speedup']}x, {cpus_text(result['machine'])})"),
    ]
    lines = ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def cpu_scaling_block(result: dict) -> str:
    """One line: the machine's own pool ceiling on pure CPU work."""
    runs = ", ".join(f"{r}x" for r in result["speedups"])
    return (f"Pure CPU work on this machine ({cpus_text(result)}) runs "
            f"{result['median_speedup']}x faster on {result['workers']} workers than on one "
            f"(median of interleaved runs: "
            f"{runs}), from `python -m benchmarks.cpu_scaling`.")


def _ci(figure: dict, digits: int = 3) -> str:
    if figure["value"] is None:
        return "-"
    return (f"{figure['value']:.{digits}f} "
            f"({figure['low']:.{digits}f}-{figure['high']:.{digits}f})")


def _budget(arm: dict) -> str:
    settings = arm.get("settings")
    if settings is None:
        return "not recorded (an earlier profile)"
    return (f"{settings['train.warmup_epochs']} + {settings['train.epochs']}, "
            f"{settings.get('train.freeze_stages', 0)}, {settings.get('tta.internal', 'none')}")


def _regularisation(arm: dict) -> str:
    settings = arm.get("settings", {})
    if "model.dropout" not in settings:
        return "not recorded (an earlier profile)"
    return f"{settings['model.dropout']} / {settings['model.drop_path']}"


def _geometric_augmentation(arm: dict) -> str:
    settings = arm.get("settings", {})
    keys = [f"train.augment.{name}" for name in ("rotation_deg", "scale", "translate")]
    if not all(key in settings for key in keys):
        return "params.yaml's (not set by the profile)"
    return " / ".join(f"{settings[key]:g}" for key in keys)


def _epochs(arm: dict) -> str:
    averaged = arm.get("averaged_epochs")
    kept = f"; kept the average of {averaged[0]}-{averaged[-1]}" if averaged else ""
    return f"{arm['epochs_run']} ({arm['best_epoch']}{kept})"


def _bootstrap_unit(arm: dict) -> str:
    drawn = arm.get("test_bootstrap", {"unit": "image", "independent_units": arm["test_images"]})
    return f"{drawn['unit']} ({drawn['independent_units']:,} of {arm['test_images']:,})"


def train_block(result: dict) -> str:
    """Markdown table of the training benchmark: one column per preprocessing arm."""
    arms = result["arms"]
    names = list(arms)

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(arms[a]) for a in names) + " |"

    # AUROCs to four digits: their criteria (0.997, 0.999) sit within a rounding of them.
    headline = [("accuracy", "accuracy", 3), ("balanced accuracy", "balanced_accuracy", 3),
                ("macro-F1", "macro_f1", 3), ("macro one-vs-rest AUROC", "macro_auroc", 4),
                ("tumour-vs-healthy AUROC (tumor_score)", "tumor_auroc", 4)]
    lines = ["| internal test (95% bootstrap CI) | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    lines += [row(label, lambda a, k=key, d=digits: _ci(a["test"][k], d))
              for label, key, digits in headline]
    lines += [
        row("bootstrap unit (independent units among the test images)", _bootstrap_unit),
        row("recall per class", lambda a: ", ".join(f"{k} {v:.3f}"
                                                     for k, v in a["test_recall"].items())),
        row("test ECE, T = 1 / fitted T (T)", lambda a: f"{a['test_ece']['before']:.3f} / "
            f"{a['test_ece']['after']:.3f} ({a['temperature']:.2f})"),
        row("val loss at the best epoch (one view, T = 1)",
            lambda a: f"{a['val_at_best_epoch']['loss']:.4f}"),
        row("val NLL, views averaged, after T (used to choose)",
            lambda a: f"{a['val_calibration']['after']['nll']:.4f}"),
        row("val tumour-vs-healthy AUROC, views averaged, after T",
            lambda a: f"{a['val_tumor_auroc']:.4f}"),
        row("the dataset's own leaky Testing folder: accuracy (images)",
            lambda a: f"{a['leaky_testing_folder']['accuracy']:.3f} "
            f"({a['leaky_testing_folder']['images']:,})"),
        row("budget: warm-up + full epochs, stages kept fixed, test-time views", _budget),
        row("head dropout / stochastic depth", _regularisation),
        row("training rotation (degrees) / scale / shift", _geometric_augmentation),
        row("epochs run, warm-up included (best, counted from 0)", _epochs),
        row("training loop / raw forward+backward, img/s (ratio)",
            lambda a: f"{a['throughput']['loop_images_per_s']} / "
            f"{a['throughput']['raw_images_per_s']} ({a['throughput']['loop_vs_raw']:.2f})"),
        row("wall time: train / calibrate / evaluate (total, minutes)",
            lambda a: f"{a['seconds']['train']} s / {a['seconds']['calibrate']} s / "
            f"{a['seconds']['evaluate']} s ({a['train_calibrate_evaluate_minutes']})"),
    ]
    if "better_on_val" in result:
        note = f", {result['better_on_val_note']}" if "better_on_val_note" in result else ""
        lines.append(f"\nBetter on val: **{result['better_on_val']}**{note} "
                     f"({cpus_text(result['machine'])}, profile `{result['profile']}`).")
    return "\n".join(lines)


def external_block(result: dict) -> str:
    """Markdown table of the external benchmark: every holdout matrix row under the
    profile's policy, then the policy experiment's rerun."""
    holdout = result["holdout"]
    lines = ["| model, TTA, calibration | threshold (T) | AUROC | sensitivity | specificity | "
             "TP / FP / TN / FN | band coverage: sens. / spec. on accepted |",
             "|---|---|---|---|---|---|---|"]
    for key, row in holdout["rows"].items():
        counts, review = row["counts"], row["review"]
        lines.append(
            f"| {key.replace('|', ', ')} | {row['threshold']:.4f} ({row['temperature']:.2f}) "
            f"| {_ci(row['auroc'])} | {_ci(row['sensitivity'])} "
            f"| {_ci(row['specificity'])} "
            f"| {counts['tp']} / {counts['fp']} / {counts['tn']} / {counts['fn']} "
            f"| {review['coverage']:.2f}: {_ci(review['accepted_sensitivity'])} / "
            f"{_ci(review['accepted_specificity'])} |")
    experiment, tune = result["policy_experiment"], result["finetune"]["tune"]
    repro = (f"`dvc repro` of the whole DAG: {result['repro_minutes']} min"
             if not result["reused_workspace"] else
             f"Last `dvc repro` in a reused workspace ran {', '.join(result['repro_stages_run'])}"
             f" ({result['repro_minutes']} min)")
    lines += [
        "",
        f"Policy `{holdout['policy']}` {holdout['inputs']}, fitted on tune; holdout "
        f"{holdout['holdout_images']} images ({holdout['holdout_tumour']} tumour). Fine-tuning "
        f"kept epoch {result['finetune']['best_epoch']} of {result['finetune']['epochs_run']} "
        f"(tune loss {tune['base']['loss']:.3f} -> {tune['finetuned']['loss']:.3f}, tune AUROC "
        f"{tune['base']['auroc']:.3f} -> {tune['finetuned']['auroc']:.3f}). {repro}. "
        f"`{experiment['command']}` reran "
        f"{', '.join(experiment['stages_run'])} in {experiment['seconds']} s "
        f"({cpus_text(result['machine'])})."]
    return "\n".join(lines)


def _mean(figure: dict) -> str:
    return "-" if figure["mean"] is None else f"{figure['mean']:.3f} (n={figure['count']})"


def audit_block(result: dict) -> str:
    """Markdown table of the audit benchmark: focus and lift for correct vs wrong answers on
    the internal test and the external holdout, then the dashboard and the synthetic DAG."""
    real = result["real"]
    lines = ["| set (model) | accuracy | mean confidence: correct / wrong | focus: correct / "
             "wrong | lift: correct / wrong | focus: TP / TN / FN / FP | mask area share |",
             "|---|---|---|---|---|---|---|"]
    for name, s in real["sets"].items():
        focus, lift, confidence = s["focus_tumour"], s["lift_tumour"], s["mean_confidence"]
        by_outcome = " / ".join(_mean(focus[outcome]) for outcome in ("tp", "tn", "fn", "fp"))
        lines.append(
            f"| {name} ({s['model']}, {s['images']} images) | {s['accuracy']:.3f} "
            f"| {confidence['correct']:.3f} / {confidence['wrong']:.3f} "
            f"| {_mean(focus['correct'])} / {_mean(focus['wrong'])} "
            f"| {_mean(lift['correct'])} / {_mean(lift['wrong'])} "
            f"| {by_outcome} | {s['mask_share_mean']:.3f} |")
    board, synthetic = real["dashboard"], result["synthetic_repro"]
    lines += [
        "",
        f"Focus: share of the tumour-score Grad-CAM's energy inside the brain mask "
        f"({real['mask_source']}); lift: focus / the mask's area share; n counts the images "
        f"whose map has any tumour evidence (a confident healthy answer often has none, and "
        f"its focus is undefined). Target layer "
        f"`{real['target_layer']}`, holdout policy `{real['policy']}`. Dashboard: "
        f"{board['bytes'] / 1e6:.1f} MB, {board['figures_drawn']} figures drawn in headless "
        f"Chromium, {board['browser_errors']} browser errors. `dvc repro` of the whole "
        f"synthetic DAG from scratch ({len(synthetic['stages_run'])} stages, download through "
        f"report): {synthetic['minutes']} min ({cpus_text(result['machine'])})."]
    return "\n".join(lines)


def seeds_block(result: dict) -> str:
    """Markdown tables of the seed benchmark: one row per seed, the spread against each
    criterion (no SD from one seed), and the near-duplicate groups the lost
    tumour-vs-healthy pairs sit on."""
    rows = ["| `train.seed` | CPU | val NLL after T | kept epoch | test accuracy | test "
            "macro-AUROC | test tumour-vs-healthy AUROC | the same, each group once | test ECE "
            "after T | leaky Testing folder accuracy |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {r['seed']} | {r['cpu_model'] or 'not recorded'} | {r['val_nll_after_t']:.4f} "
             f"| {r['kept_epoch']} | {_ci(r['accuracy'], 4)} | {r['macro_auroc']['value']:.4f} "
             f"| {_ci(r['tumor_auroc'], 4)} | {r['tumor_auroc_one_per_group']:.4f} "
             f"| {r['test_ece_after_t']:.4f} "
             f"| {r['leaky_testing_folder_accuracy']:.3f} |" for r in result["seeds"]]
    names = {"accuracy": "accuracy", "macro_auroc": "macro-AUROC",
             "tumor_auroc": "tumour-vs-healthy AUROC", "test_ece_after_t": "ECE after T"}
    spread = ["| test figure | criterion | mean (SD) | range | seeds meeting it |",
              "|---|---|---|---|---|"]
    spread += [f"| {names[name]} | {s['criterion']} | {s['mean']:.5f} "
               f"({'-' if s['sd'] is None else format(s['sd'], '.5f')}) "
               f"| {s['min']:.4f}-{s['max']:.4f} | {s['seeds_meeting']} of "
               f"{len(result['seeds'])} |" for name, s in result["spread"].items()]
    lost = result["lost_tumour_healthy_pairs"]
    seeds = len(result["seeds"])
    images = ["| side | near-duplicate group | label | test images (folders) | seeds where "
              "misordered | misordered pairs by seed |", "|---|---|---|---|---|---|"]
    images += [f"| {side} | {g['group']} | {g['label']} | {g['images']} "
               f"({', '.join(g['folders'])}) | {g['seeds_misordered']} of {seeds} "
               f"| {' / '.join(f'{v:g}' for v in g['pairs_by_seed'])} |"
               for side, groups in lost["groups"].items() for g in groups]
    counts, tested = lost["images_misordered_at_any_seed"], result["test_images"]
    note = (f"Test: {tested['tumour']} tumour and {tested['healthy']} healthy images "
            f"({tested['tumour'] * tested['healthy']:,} pairs). Misordered pairs by seed: "
            f"{' / '.join(f'{v:g}' for v in lost['misordered_pairs_by_seed'])}; images in "
            f"any misordered pair: {counts['tumour']} tumour, {counts['healthy']} healthy. "
            f"Share of the misordered pairs on tumour images misordered at every seed: "
            f"{lost['share_on_tumour_images_at_every_seed']:.2f}; at half the seeds or "
            f"more: {lost['share_on_tumour_images_at_half_the_seeds_or_more']:.2f} "
            f"({cpus_text(result['machine'])}).")
    return "\n".join([*rows, "", *spread, "", *images, "", note])


def profiles_block() -> str:
    """The one-line command of each real-data profile, rendered from benchmarks/profiles.py."""
    from benchmarks.profiles import PROFILES, exp_run_command

    return "\n\n".join(f"`{name}`:\n\n```bash\n{exp_run_command(overrides)}\n```"
                        for name, overrides in PROFILES.items())


BLOCKS = {"data_layer": data_layer_block, "preprocess": preprocess_block,
          "cpu_scaling": cpu_scaling_block, "train": train_block, "external": external_block,
          "audit": audit_block, "seeds": seeds_block}
GENERATED = {"profiles": profiles_block}  # rendered from code, not from a result file


def _replace(readme: str, name: str, text: str) -> str:
    pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), readme)


def render(readme: str) -> str:
    """``readme`` with every results block replaced by its rendering from the JSON."""
    for name, make in GENERATED.items():
        readme = _replace(readme, name, make())
    for name, block in BLOCKS.items():
        result = json.loads((RESULTS / f"{name}.json").read_text())
        readme = _replace(readme, name, block(result))
    return readme


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
