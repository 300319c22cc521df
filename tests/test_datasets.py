import pytest

from mlops_pipeline.datasets import DatasetSpecError, load_dataset_spec


def test_default_dataset_is_the_synthetic_churn():
    spec = load_dataset_spec("churn")
    assert spec.source.kind == "synthetic"
    assert spec.columns[:2] == ["customer_id", "event_time"] and spec.columns[-1] == "churned"
    assert spec.suite_path.is_file()


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetSpecError, match=r"unknown dataset 'nope'.*'churn'"):
        load_dataset_spec("nope")


def test_invalid_file_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsource: {kind: file}\nid_column: id\n")
    with pytest.raises(DatasetSpecError, match=r"broken.yaml is invalid.*path_template"):
        load_dataset_spec(str(path))


def test_a_column_in_two_roles_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "name: dup\nsource: {kind: file, path_template: 'x/{ds}.csv'}\nid_column: id\ntime_column: t\n"
        "target: y\nnumeric_features: [a, y]\ncategorical_features: []\nsuite: s.json\n"
    )
    with pytest.raises(DatasetSpecError, match=r"columns listed twice.*'y'"):
        load_dataset_spec(str(path))
