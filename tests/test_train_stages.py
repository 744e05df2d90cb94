"""train, calibrate and evaluate in the tiny end-to-end repo."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from benchmarks.compare_val import compare_val, predictor_summary
from tests.pipeline import copy_project, dvc, stage_error, stages_run, with_downstream
from tumorscreen.data.store import load_split, write_split
from tumorscreen.metrics.calibration import fit_temperature
from tumorscreen.metrics.report import evaluation_report
from tumorscreen.models.checkpoint import load_checkpoint
from tumorscreen.models.predict import checkpoint_logits
from tumorscreen.models.score import CLASSES, NO_TUMOR, tumor_score
from tumorscreen.models.tta import mode_logits
from tumorscreen.records import cpu_model, sha256_file, write_json
from tumorscreen.train.data import labelled_split
from tumorscreen.train.loop import TrainConfig, weight_soup

CPU = torch.device("cpu")


def read(repo, name: str) -> dict:
    return json.loads((repo / name).read_text())


def logits_of(repo, split: str):
    model, config = load_checkpoint(repo / "models/base")
    images = labelled_split(repo / "data/preprocessed", split)
    return checkpoint_logits(model, config, images.images, CPU), images


def test_checkpoint_and_run_record(repo):
    _, config = load_checkpoint(repo / "models/base")
    assert config["backbone"] == "tiny_cnn" and config["classes"] == list(CLASSES)
    assert config["precision"] == "fp32" and config["image_size"] == 128
    run_info = read(repo, "models/base/run_info.json")
    assert run_info["device"] == "cpu" and run_info["wall_seconds"] > 0
    assert run_info["name"] == cpu_model()  # fp32 results repeat bit for bit on one CPU model
    assert run_info["loop_images_per_s"] > 0 and run_info["raw_images_per_s"] > 0
    assert run_info["site_images"] == 0  # train.site_weight 0: the adapt split is not read
    assert "torch" in run_info["provenance"]["versions"]
    curves = repo / "plots/train/plots/metrics"
    assert {"train_loss.tsv", "val_loss.tsv", "val_accuracy.tsv"} <= {
        p.name for p in curves.iterdir()}


def test_temperature_is_the_library_fit_on_val_logits(repo):
    logits, val = logits_of(repo, "val")
    stored = read(repo, "models/calibration.json")
    assert stored["fitted_on"] == "val" and stored["images"] == len(val)
    assert stored["temperature"] == pytest.approx(fit_temperature(logits, val.labels), rel=1e-6)
    metrics = read(repo, "metrics/calibration.json")
    for side in ("before", "after"):
        assert set(metrics[side]) == {"nll", "ece", "mce", "brier"}
    assert metrics["after"]["nll"] <= metrics["before"]["nll"] + 1e-9
    tumour = roc_auc_score(val.labels != NO_TUMOR,
                           tumor_score(logits, stored["temperature"]))
    assert metrics["tumor_auroc"] == pytest.approx(tumour, rel=1e-9)
    for name in ("before", "after"):
        assert (repo / f"plots/calibrate/reliability_{name}.csv").is_file()


def test_val_comparison_scores_a_checkpoint_as_the_calibrate_stage_does(repo):
    checkpoint = repo / "models/base"
    result = compare_val(repo, [checkpoint], [checkpoint], resamples=50)
    metrics = read(repo, "metrics/calibration.json")
    assert result["val_images"] == metrics["images"]
    assert result["baseline"] == result["candidate"]
    assert result["baseline"]["temperature"] == pytest.approx(metrics["temperature"], abs=1e-4)
    assert result["baseline"]["nll_after_t"] == pytest.approx(metrics["after"]["nll"], abs=1e-4)
    assert result["nll_difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert result["interval_below_zero"] is False
    assert result["trained_on"] == [cpu_model()]


def test_val_comparison_refuses_checkpoints_trained_on_different_cpu_models(repo, tmp_path):
    checkpoint = repo / "models/base"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(checkpoint, elsewhere)
    run_info = read(repo, "models/base/run_info.json")
    write_json(elsewhere / "run_info.json", {**run_info, "name": "AMD EPYC 7B13"})
    with pytest.raises(SystemExit, match="trained on AMD EPYC 7B13 and "):
        compare_val(repo, [checkpoint], [elsewhere], resamples=50)
    write_json(elsewhere / "run_info.json", {**run_info, "name": "cpu"})  # an older record
    assert compare_val(repo, [checkpoint], [elsewhere], resamples=50)["trained_on"] == [
        cpu_model()]


def test_val_comparison_scores_several_checkpoints_as_their_mean_logits(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    tta = params["tta"]
    val = labelled_split(repo / "data/preprocessed", "val")
    paths = val.manifest["path"].to_numpy()
    members = [repo / "models/base", repo / "models/finetuned"]
    each = [mode_logits(*load_checkpoint(folder), val.images, CPU, tta["internal"],
                        tta["rotation_deg"]) for folder in members]
    assert not np.allclose(each[0], each[1])  # two different networks
    result = compare_val(repo, members[:1], members, resamples=50)
    assert result["candidate"]["checkpoints"] == [str(folder) for folder in members]
    assert result["baseline"] == {"checkpoints": [str(members[0])], "tta": tta["internal"],
                                  **predictor_summary(each[0], val.labels, paths)}
    assert result["candidate"] == {"checkpoints": [str(folder) for folder in members],
                                   "tta": tta["internal"],
                                   **predictor_summary((each[0] + each[1]) / 2, val.labels, paths)}
    assert result["nll_difference"]["value"] == pytest.approx(
        result["candidate"]["nll_after_t"] - result["baseline"]["nll_after_t"], abs=2e-4)


def two_networks_on_val(repo):
    """The views, the val split and its paths, the base and fine-tuned checkpoints, and
    each one's val logits under the views."""
    tta = yaml.safe_load((repo / "params.yaml").read_text())["tta"]
    val = labelled_split(repo / "data/preprocessed", "val")
    base, finetuned = repo / "models/base", repo / "models/finetuned"
    each = {folder: mode_logits(*load_checkpoint(folder), val.images, CPU, tta["internal"],
                                tta["rotation_deg"]) for folder in (base, finetuned)}
    return tta, val, val.manifest["path"].to_numpy(), base, finetuned, each


def test_val_comparison_pairs_checkpoints_seed_by_seed(repo):
    tta, val, paths, base, finetuned, each = two_networks_on_val(repo)
    # pair 1 ties (one network against itself), pair 2 sets two networks apart
    result = compare_val(repo, [base, base], [base, finetuned], resamples=50,
                         paired_seeds=True)
    first, second = result["pairs"]
    assert "baseline" not in result and result["paired_seeds"] is True
    assert first["nll_difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert second["baseline"] == {"checkpoints": [str(base)], "tta": tta["internal"],
                                  **predictor_summary(each[base], val.labels, paths)}
    assert second["candidate"] == {"checkpoints": [str(finetuned)], "tta": tta["internal"],
                                   **predictor_summary(each[finetuned], val.labels, paths)}
    assert second["nll_difference"]["value"] != 0
    assert result["nll_difference"]["value"] == pytest.approx(
        second["nll_difference"]["value"] / 2, abs=1e-4)
    # a quarter of the seed resamples draw the tied pair twice, so that interval holds zero
    across = result["nll_difference_resampling_seeds"]
    assert across["value"] == result["nll_difference"]["value"]
    assert across["low"] <= 0 <= across["high"]
    assert result["interval_below_zero_resampling_seeds"] is False
    with pytest.raises(SystemExit, match="that many checkpoints for each baseline one"):
        compare_val(repo, [base], [base, finetuned], resamples=50, paired_seeds=True)


def test_val_comparison_pairs_each_seed_with_an_ensemble_of_candidate_members(repo):
    tta, val, paths, base, finetuned, each = two_networks_on_val(repo)
    # seed 1's candidate averages two different networks; seed 2's, one network twice
    result = compare_val(repo, [base, base], [base, finetuned, finetuned, finetuned],
                         resamples=50, paired_seeds=True, candidate_members=2)
    first, second = result["pairs"]
    assert result["candidate_members"] == 2
    assert first["baseline"]["checkpoints"] == [str(base)]
    assert first["candidate"] == {"checkpoints": [str(base), str(finetuned)],
                                  "tta": tta["internal"],
                                  **predictor_summary((each[base] + each[finetuned]) / 2,
                                                      val.labels, paths)}
    assert second["candidate"] == {"checkpoints": [str(finetuned), str(finetuned)],
                                   "tta": tta["internal"],
                                   **predictor_summary(each[finetuned], val.labels, paths)}
    for members, checkpoints, paired in ((2, [base, finetuned, finetuned], True),
                                         (2, [base, finetuned], False),
                                         (0, [], True)):
        with pytest.raises(SystemExit, match="candidate"):
            compare_val(repo, [base], checkpoints, resamples=50, paired_seeds=paired,
                        candidate_members=members)


def test_val_comparison_scores_a_soup_as_one_network(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    tta = params["tta"]
    val = labelled_split(repo / "data/preprocessed", "val")
    train = labelled_split(repo / "data/preprocessed", "train")
    members = [repo / "models/base", repo / "models/finetuned"]
    soup = weight_soup([load_checkpoint(folder)[0] for folder in members],
                       (train.images, train.labels), TrainConfig.from_params(params["train"]),
                       CPU, "fp32")
    expected = mode_logits(soup, load_checkpoint(members[0])[1], val.images, CPU,
                           tta["internal"], tta["rotation_deg"])
    result = compare_val(repo, members[:1], members, resamples=50, candidate_soup=True)
    assert result["candidate_soup"] is True
    assert result["candidate"] == {"checkpoints": [str(folder) for folder in members],
                                   "tta": tta["internal"],
                                   **predictor_summary(expected, val.labels,
                                                       val.manifest["path"].to_numpy())}
    assert result["candidate"] != compare_val(repo, members[:1], members, 50)["candidate"]


def test_val_comparison_scores_a_side_under_the_views_it_is_given(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    val = labelled_split(repo / "data/preprocessed", "val")
    paths = val.manifest["path"].to_numpy()
    checkpoint = repo / "models/base"
    six = mode_logits(*load_checkpoint(checkpoint), val.images, CPU, "flip_rotate",
                      params["tta"]["rotation_deg"])
    result = compare_val(repo, [checkpoint], [checkpoint], resamples=50,
                         candidate_tta="flip_rotate")
    assert result["baseline"]["tta"] == params["tta"]["internal"] != "flip_rotate"
    assert result["candidate"] == {"checkpoints": [str(checkpoint)], "tta": "flip_rotate",
                                   **predictor_summary(six, val.labels, paths)}
    assert result["baseline"]["nll_after_t"] != result["candidate"]["nll_after_t"]


def test_val_comparison_scores_the_candidate_on_its_own_workspace(repo, tmp_path):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    arrays = load_split(repo / "data/preprocessed", "val", mmap=False)
    other = tmp_path / "other" / "data" / "preprocessed"
    write_split(other / "val", 255 - arrays.images, arrays.masks, arrays.manifest)
    val = labelled_split(other, "val")
    checkpoint = repo / "models/base"
    inverted = mode_logits(*load_checkpoint(checkpoint), val.images, CPU,
                           params["tta"]["internal"], params["tta"]["rotation_deg"])
    result = compare_val(repo, [checkpoint], [checkpoint], resamples=50,
                         candidate_workdir=tmp_path / "other")
    assert result["candidate"] == {"checkpoints": [str(checkpoint)],
                                   "tta": params["tta"]["internal"],
                                   **predictor_summary(inverted, val.labels,
                                                       val.manifest["path"].to_numpy())}
    assert result["baseline"]["nll_after_t"] != result["candidate"]["nll_after_t"]
    write_split(other / "val", arrays.images[1:], arrays.masks[1:], arrays.manifest[1:])
    with pytest.raises(SystemExit, match="other images"):
        compare_val(repo, [checkpoint], [checkpoint], resamples=50,
                    candidate_workdir=tmp_path / "other")


def test_evaluate_equals_the_library_report_on_test(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]
    logits, test = logits_of(repo, "test")
    temperature = read(repo, "models/calibration.json")["temperature"]
    expected = evaluation_report(logits, test.labels, temperature, CLASSES,
                                 params["bootstrap"], params["confidence"], params["seed"],
                                 groups=test.resampling_units(params["bootstrap_unit"]))
    stored = read(repo, "metrics/evaluate.json")
    assert stored["test"]["bootstrap_unit"] == "near-duplicate group"
    assert stored["test"]["independent_units"] == test.manifest["group"].nunique()
    for name, interval in expected["headline"].items():
        assert stored["test"]["headline"][name] == pytest.approx(interval, nan_ok=True), name
    assert stored["test"]["images"] == len(test)


def test_leaky_testing_folder_is_reported_apart_and_labelled(repo):
    leaky = read(repo, "metrics/evaluate.json")["leaky_testing_folder"]
    assert "Testing folder" in leaky["note"] and "near-duplicates" in leaky["note"]
    assert leaky["images"] == sum(leaky["images_by_split"].values()) > 0
    assert set(leaky["images_by_split"]) <= {"train", "val", "test", "excluded"}


def test_every_metrics_file_carries_provenance(repo):
    checkpoint = sha256_file(repo / "models/base/model.pt")
    for name in ("train", "calibration", "evaluate"):
        block = read(repo, f"metrics/{name}.json")["provenance"]
        assert block["checkpoint_sha256"] == checkpoint, name
        assert block["device"] == "cpu" and "torch" in block["versions"], name
    evaluate = read(repo, "metrics/evaluate.json")["provenance"]
    assert evaluate["temperature"] == read(repo, "models/calibration.json")["temperature"]
    assert evaluate["tta"] == "none" and "policy" in evaluate and "threshold" in evaluate


def test_plots_show_json_has_the_four_plot_ids(repo):
    shown = json.loads(dvc(repo, "plots", "show", "--json").stdout)["data"]
    assert {"confusion", "roc", "pr", "calibration"} <= set(shown)
    for plot_id in ("confusion", "roc", "pr", "calibration"):
        assert shown[plot_id][0]["content"]["data"]["values"], plot_id


def test_predictions_plot_lines_up_with_the_test_split(repo):
    rows = (repo / "plots/evaluate/predictions.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted"
    assert len(rows) - 1 == read(repo, "metrics/evaluate.json")["test"]["images"]


def test_train_experiment_reruns_train_and_downstream_and_can_read_the_adapt_split(repo):
    before = sha256_file(repo / "models/base/model.pt")
    result = dvc(repo, "exp", "run", "-S", "train.seed=1", "-S", "tta.internal=flip",
                 "-S", "train.site_weight=0.5")
    assert stages_run(result.stdout) == with_downstream("train")
    assert sha256_file(repo / "models/base/model.pt") != before
    adapt = load_split(repo / "data/preprocessed", "adapt").manifest
    assert read(repo, "models/base/run_info.json")["site_images"] == \
        (adapt["preprocess_decision"] != "reject").sum() > 0  # joint training read them
    # with flip TTA both T and the test report come from the mean of plain and mirrored logits
    model, config = load_checkpoint(repo / "models/base")
    val, test = (labelled_split(repo / "data/preprocessed", split) for split in ("val", "test"))
    flipped = [(checkpoint_logits(model, config, images, CPU)
                + checkpoint_logits(model, config, np.ascontiguousarray(images[:, :, ::-1]),
                                    CPU)) / 2 for images in (val.images, test.images)]
    stored = read(repo, "models/calibration.json")
    assert stored["tta"] == "flip"
    assert stored["temperature"] == pytest.approx(fit_temperature(flipped[0], val.labels),
                                                  rel=1e-4)
    params = yaml.safe_load((repo / "params.yaml").read_text())["evaluate"]
    expected = evaluation_report(flipped[1], test.labels, stored["temperature"], CLASSES,
                                 params["bootstrap"], params["confidence"], params["seed"])
    evaluated = read(repo, "metrics/evaluate.json")
    assert evaluated["provenance"]["tta"] == "flip"
    assert evaluated["test"]["headline"]["accuracy"] == pytest.approx(
        expected["headline"]["accuracy"])


def test_evaluate_refuses_a_temperature_fitted_under_other_views(tmp_path):
    root = copy_project(tmp_path, **{"tta.internal": "none"})
    (root / "models").mkdir()
    (root / "models/calibration.json").write_text('{"temperature": 1.0, "tta": "flip"}')
    assert "fitted with tta 'flip'" in stage_error(root, "evaluate")


def test_implausible_augmentation_param_gives_one_line_and_exit_1(tmp_path):
    root = copy_project(tmp_path, **{"train.augment.rotation_deg": 90.0})
    assert stage_error(root, "train").startswith("train: augment.rotation_deg")
