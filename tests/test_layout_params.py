from pathlib import Path

import pytest
import yaml

from tumorscreen.data.layout import UNKNOWN, is_tumor, labels_from_path
from tumorscreen.errors import TumorScreenError
from tumorscreen.params import declared_params, load_params

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("dataset", "path", "folder", "label"), [
    ("internal", "Training/glioma/a.jpg", "Training", "glioma"),
    ("internal", "Testing/meningioma/.ipynb_checkpoints/x.jpg", "Testing", "meningioma"),
    ("internal", "Brain/TESTING/NoTumor/x.jpg", "Testing", "notumor"),
    ("external", "brain_tumor_dataset/yes/Y1.JPG", "", "yes"),
    ("external", "no/1 no.jpeg", "", "no"),
    ("external", "README.md", "", UNKNOWN),
])
def test_labels_from_path(dataset, path, folder, label):
    found = labels_from_path(dataset, path)
    assert (found.split_folder, found.label) == (folder, label)


def test_is_tumor():
    assert [is_tumor(x) for x in ("glioma", "notumor", "yes", "no", UNKNOWN)] == [1, 0, 1, 0, -1]


def test_every_declared_param_exists_and_stages_see_only_their_own():
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    for stage in stages:
        visible = load_params(stage, PROJECT / "params.yaml", PROJECT / "dvc.yaml")
        assert set(visible) <= set(params)
    qc_view = load_params("dedup", PROJECT / "params.yaml", PROJECT / "dvc.yaml")
    assert set(qc_view["qc"]) == {"limits"} and set(qc_view["qc"]["limits"]) == {"max_pixels"}
    with pytest.raises(KeyError):
        _ = qc_view["split"]


def test_declared_but_missing_param_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text("a: {b: 1}\n")
    (tmp_path / "dvc.yaml").write_text("stages: {s: {cmd: x, params: [a.c]}}\n")
    assert declared_params("s", tmp_path / "dvc.yaml") == ["a.c"]
    with pytest.raises(TumorScreenError, match=r"'a\.c'"):
        load_params("s", tmp_path / "params.yaml", tmp_path / "dvc.yaml")
