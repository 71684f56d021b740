"""``fedledger data heart``: real Fed-Heart-Disease files with FLamby's split, a disjoint validation set, a task spec."""

import hashlib
import json

import numpy as np
import pytest

from fedcore.population import load_validation_set, scaler_from_rows
from fedcore.tables import read_task_table
from fedcore.task import TaskSpec, task_hash_hex
from fedledger.cli import main
from fedledger.datasets import write_heart
from fedsets.data import default_data_root
from fedsets.heart import (
    HEART_CENTERS,
    HEART_GROUP_COLUMN,
    HEART_WEIGHTING,
    PERSONAL_LOCAL_CANDIDATE,
    PERSONAL_METHOD,
    PERSONAL_MLP,
    PERSONAL_MLP_TRAINING,
    heart_parts,
    heart_paths,
)


def read_site_table(path, feature_columns, label_column):
    """A written file's raw values (float64, as the node standardizes them) and labels."""
    return read_task_table(path, feature_columns, label_column, dtype=np.float64)

try:
    heart_paths(default_data_root())
except Exception:  # pragma: no cover - the shared data folder is part of the machines' set-up
    pytest.skip("Fed-Heart-Disease files not found", allow_module_level=True)

# FLamby's per-center train/test sizes 199/104, 172/89, 30/16, 85/45; 25% of each train part is carved off.
SIZES = {"cleveland": (149, 50, 104), "hungarian": (129, 43, 89), "switzerland": (22, 8, 16), "va": (63, 22, 45)}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("heart")
    return out, write_heart(out)


def test_parts_are_disjoint_and_cover_flamby_split():
    for part in heart_parts():
        train, val, test = (set(part.train_index.tolist()), set(part.validation_index.tolist()),
                            set(part.test_index.tolist()))
        assert not (train & val) and not (train & test) and not (val & test)
        assert len(train | val | test) == len(part.table)  # every cleaned row is in exactly one part
        assert (len(train), len(val), len(test)) == SIZES[part.name]


def test_files_row_counts_and_hashes(written):
    out, manifest = written
    spec = TaskSpec.load(out / "task.json")
    for name, (n_train, n_val, n_test) in SIZES.items():
        assert manifest["sites"][name] == {"file": f"{name}.csv", "test_file": f"test/{name}.csv",
                                           "train_rows": n_train, "validation_rows": n_val, "test_rows": n_test}
        assert len(read_site_table(out / f"{name}.csv", spec.feature_columns, spec.label_column)) == n_train
        assert len(read_site_table(out / "test" / f"{name}.csv", spec.feature_columns, spec.label_column)) == n_test
    assert manifest["files"]["validation.csv"]["rows"] == sum(v for _, v, _ in SIZES.values()) == 123
    for relative, info in manifest["files"].items():
        data = (out / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["bytes"]
    assert manifest["validation_set_hash"] == "0x" + manifest["files"]["validation.csv"]["sha256"]
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_every_file_holds_raw_rows_and_the_task_carries_the_sponsors_scaler(written):
    out, _ = written
    spec = TaskSpec.load(out / "task.json")
    parts = heart_parts()
    for part in parts:
        site = read_site_table(out / f"{part.name}.csv", spec.feature_columns, spec.label_column)
        test = read_site_table(out / "test" / f"{part.name}.csv", spec.feature_columns, spec.label_column)
        np.testing.assert_array_equal(site.features, part.table.X[part.train_index])  # raw, not normalized
        np.testing.assert_array_equal(site.labels, part.table.y[part.train_index])
        np.testing.assert_array_equal(test.features, part.table.X[part.test_index])
    validation = read_task_table(out / "validation.csv", spec.feature_columns, spec.label_column, dtype=np.float64,
                                 extra_columns=(HEART_GROUP_COLUMN,))
    raw = np.concatenate([p.table.X[p.validation_index] for p in parts])
    np.testing.assert_array_equal(validation.features, raw)  # raw, bit for bit after the round trip
    np.testing.assert_array_equal(validation.labels, np.concatenate([p.table.y[p.validation_index] for p in parts]))
    assert validation.extra[HEART_GROUP_COLUMN] == tuple(p.name for p in parts for _ in p.validation_index)
    # the scaler is the validation rows' own mean and std (no hospital's private statistics), applied by every role
    assert spec.scaling == scaler_from_rows(raw)
    assert spec.population.group_column == HEART_GROUP_COLUMN and spec.population.weighting == HEART_WEIGHTING
    scored = load_validation_set(out / "validation.csv", spec)
    np.testing.assert_allclose(scored.X.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scored.X.std(axis=0, ddof=1), 1.0, atol=1e-5)
    assert set(scored.groups) == set(HEART_CENTERS)


def test_validation_rows_are_in_no_site_or_test_file_by_content(written):
    """Content check over the files themselves: a validation row (unscaled back) is in no site or test file,
    except rows the raw data itself holds twice (one duplicate patient in VA)."""
    out, _ = written
    spec = TaskSpec.load(out / "task.json")
    for part in heart_parts():
        raw_rows = [tuple(r) + (y,) for r, y in zip(part.table.X, part.table.y)]
        duplicated = {r for r in raw_rows if raw_rows.count(r) > 1}
        others = set()
        for relative in (f"{part.name}.csv", f"test/{part.name}.csv"):
            table = read_site_table(out / relative, spec.feature_columns, spec.label_column)
            rows = {tuple(r) + (y,) for r, y in zip(table.features, table.labels)}
            assert not (rows & others) - duplicated  # site and test files are disjoint too
            others |= rows
        validation_rows = {raw_rows[i] for i in part.validation_index}
        assert not (validation_rows & others) - duplicated


def test_task_spec_is_flambys_logistic_regression(written):
    out, manifest = written
    spec = TaskSpec.load(out / "task.json")
    assert spec.model == "logreg" and spec.label_column == "num" and spec.metric == "accuracy"
    assert spec.n_features == 13 and spec.feature_columns[:2] == ("age", "sex")
    t = spec.training
    assert (t.local_steps, t.batch_size, t.lr, t.optimizer) == (100, 4, 1e-3, "sgd")
    assert manifest["task_hash"] == task_hash_hex(spec)


def test_model_mlp_is_the_benchmarks_ditto_mlp_on_the_same_files(written, tmp_path):
    out, manifest = written
    mlp = write_heart(tmp_path / "mlp", model="mlp")
    spec = TaskSpec.load(tmp_path / "mlp" / "task.json")
    assert spec.model == PERSONAL_MLP["model"]
    assert list(spec.model_params["hidden_sizes"]) == PERSONAL_MLP["model_params"]["hidden_sizes"]
    t = spec.training
    assert {"lr": t.lr, "local_steps": t.local_steps, "batch_size": t.batch_size} == PERSONAL_MLP_TRAINING
    assert spec.personalization.method == PERSONAL_METHOD and spec.personalization.local_candidate is PERSONAL_LOCAL_CANDIDATE
    assert mlp["task_hash"] == task_hash_hex(spec) != manifest["task_hash"]
    assert {k: v for k, v in mlp["files"].items() if k != "task.json"} == \
        {k: v for k, v in manifest["files"].items() if k != "task.json"}  # the data does not change


def test_same_arguments_same_bytes_and_seed_changes_the_carving(written, tmp_path):
    out, manifest = written
    again = write_heart(tmp_path / "again")
    assert again["files"] == manifest["files"]
    other = write_heart(tmp_path / "other", seed=7)
    assert other["files"]["validation.csv"]["sha256"] != manifest["files"]["validation.csv"]["sha256"]
    assert other["files"]["test/va.csv"] == manifest["files"]["test/va.csv"]  # the test parts are FLamby's, fixed


def test_cli_writes_the_folder(tmp_path, capsys):
    assert main(["data", "heart", "--out", str(tmp_path / "d"), "--validation-fraction", "0.2", "--format", "json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["split"]["validation_fraction"] == 0.2
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(
        [f"{c}.csv" for c in HEART_CENTERS] + ["manifest.json", "task.json", "test", "validation.csv"])
    assert main(["data", "heart", "--out", str(tmp_path / "e"), "--validation-fraction", "1.5"]) == 2
    assert "validation-fraction" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "heart", "--out", str(tmp_path / "f"), "--model", "cnn"])
    assert exit_info.value.code == 2 and "--model" in capsys.readouterr().err
