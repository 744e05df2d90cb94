import argparse
import json

import pytest

from benchmarks.profiles import PREPROCESSING_ARMS, PROFILES, REAL_CPU, REAL_DATA_ARM
from benchmarks.train import better_on_val, parse_override, train_settings
from benchmarks.update_readme import BLOCKS, GENERATED, README, RESULTS, cpus_text, render
from tumorscreen.records import cpu_model, machine_record


def test_readme_results_match_the_benchmark_json():
    text = README.read_text()
    for name in (*BLOCKS, *GENERATED):
        assert f"<!-- results:{name} -->" in text and f"<!-- /results:{name} -->" in text
    assert render(text) == text, "README figures differ: run python -m benchmarks.update_readme"


def test_real_data_profiles_use_the_preprocessing_arm_that_won_on_val():
    result = json.loads((RESULTS / "train.json").read_text())
    assert result["better_on_val"] == REAL_DATA_ARM
    for overrides in PROFILES.values():
        for key, value in PREPROCESSING_ARMS[REAL_DATA_ARM].items():
            assert overrides[key] == value, key


def test_training_benchmark_names_a_better_arm_only_at_one_budget():
    result = json.loads((RESULTS / "train.json").read_text())
    arms = result["arms"]
    assert better_on_val(arms) == result["better_on_val"]
    assert arms["raw"]["settings"] == arms["preprocessed"]["settings"]
    assert arms["raw"]["settings"] == train_settings(REAL_CPU, {}), (
        "the profile changed since its figures were measured: rerun python -m benchmarks.train")
    assert better_on_val({name: arms[name] for name in ("raw",)}) is None
    changed = {**arms, "raw": {**arms["raw"], "settings": {"train.epochs": 1}}}
    assert better_on_val(changed) is None
    one_step = train_settings(REAL_CPU, {"preprocess.crop.enabled": True})
    assert one_step["preprocess.crop.enabled"] is True  # an arm's toggle override is recorded
    assert better_on_val({**arms, "raw": {**arms["raw"], "settings": one_step}}) is None
    assert parse_override("train.epochs=6") == ("train.epochs", 6)
    assert parse_override("tta.internal=all") == ("tta.internal", "all")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_override("train.epochs")


def test_machine_records_name_the_cpu_model_that_results_depend_on(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                       "model name\t: AMD EPYC 7B13\nprocessor\t: 1\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert cpu_model(tmp_path / "absent")  # the architecture where there is no cpuinfo
    machine = machine_record()
    assert machine["cpus"] >= 1 and machine["cpu_model"] == cpu_model()
    assert cpus_text(machine) == f"{machine['cpus']} CPUs, {machine['cpu_model']}"
    assert cpus_text({"cpus": 2}) == "2 CPUs"  # results recorded before the model was
