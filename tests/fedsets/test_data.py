"""Data sets: the raw source-file loader and FLamby's Fed-Heart-Disease preprocessing and split."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from fedcore.errors import DataError
from fedcore.splits import flamby_stratify, split_sizes, train_test_split_indices
from fedsets.data import (
    CsvSchema,
    carve_validation,
    default_data_root,
    load_csv_site,
    pool_sites,
    read_table,
)
from fedsets.heart import heart_paths, load_fed_heart_disease, load_heart_tables

CENTERS = ("cleveland", "hungarian", "switzerland", "va")


@pytest.fixture(scope="module")
def heart_sites():
    return load_fed_heart_disease()


# -- Fed-Heart-Disease ---------------------------------------------------------------------------


def test_row_and_positive_counts_match_flamby():
    tables = load_heart_tables()
    assert [t.name for t in tables] == list(CENTERS)
    assert [len(t) for t in tables] == [303, 261, 46, 130]
    assert [int(t.y.sum()) for t in tables] == [139, 98, 45, 101]
    assert sum(len(t) for t in tables) == 740


def test_feature_columns_follow_flamby_get_dummies(heart_sites):
    expected = (
        "age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak",
        "cp_2", "cp_3", "cp_4", "restecg_1", "restecg_2",
    )  # fmt: skip
    for site in heart_sites:
        assert site.feature_names == expected
        assert site.X_train.shape[1] == 13 and site.X_train.dtype == np.float32


def test_one_hot_columns_encode_the_raw_category():
    cleveland = load_heart_tables()[0]
    first = dict(zip(cleveland.feature_names, cleveland.X[0]))
    # raw first row: 63,1,cp=1,145,233,1,restecg=2,150,0,2.3,...
    assert first["age"] == 63 and first["oldpeak"] == 2.3
    assert (first["cp_2"], first["cp_3"], first["cp_4"]) == (0, 0, 0)
    assert (first["restecg_1"], first["restecg_2"]) == (0, 1)


def test_split_sizes_match_flamby(heart_sites):
    assert [(s.n_train, s.n_test) for s in heart_sites] == [(199, 104), (172, 89), (30, 16), (85, 45)]
    for site in heart_sites:
        rows = np.concatenate([site.train_index, site.test_index])
        assert np.array_equal(np.sort(rows), np.arange(len(site.table)))  # disjoint, complete


# sha256 of the test-row indices (int64 little-endian, in split order), checked once against
# scikit-learn 1.9.1's train_test_split(..., train_size=0.66, test_size=0.34, random_state=43).
SKLEARN_TEST_INDEX_SHA256 = {
    "cleveland": "06af905fd0f86abd",
    "hungarian": "d621ada7d7165404",
    "switzerland": "2d1e4a71692a5818",
    "va": "ec2c516879e5a0ee",
}


def test_split_is_sklearn_train_test_split_row_for_row(heart_sites):
    for site in heart_sites:
        digest = hashlib.sha256(np.asarray(site.test_index, dtype="<i8").tobytes()).hexdigest()[:16]
        assert digest == SKLEARN_TEST_INDEX_SHA256[site.name], site.name


def test_split_matches_sklearn_when_installed():
    model_selection = pytest.importorskip("sklearn.model_selection")
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(12, 300))
        labels = rng.integers(0, 3, n)
        if np.bincount(labels).min() < 3:
            continue
        for stratify in (labels, None):
            try:
                expected = model_selection.train_test_split(
                    np.arange(n), train_size=0.66, test_size=1.0 - 0.66, random_state=trial, stratify=stratify
                )
            except ValueError:  # sizes that scikit-learn refuses (float noise); we cap instead
                continue
            got = train_test_split_indices(n, train_fraction=0.66, seed=trial, stratify=stratify)
            assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])


def test_stratified_split_keeps_label_proportions(heart_sites):
    cleveland = heart_sites[0]
    share_train = cleveland.y_train.mean()
    share_test = cleveland.y_test.mean()
    assert abs(share_train - share_test) < 0.01
    # switzerland has a single negative: FLamby does not stratify it
    assert flamby_stratify(load_heart_tables()[2].y) is None


def test_normalization_uses_the_sites_own_training_rows(heart_sites):
    for site in heart_sites:
        raw_train = site.table.X[site.train_index]
        mean = raw_train.mean(axis=0)
        std = raw_train.std(axis=0, ddof=1)
        np.testing.assert_allclose(site.preprocessor.mean, mean)
        expected_test = (site.table.X[site.test_index] - mean) / (std + 1e-9)
        np.testing.assert_allclose(site.X_test, expected_test.astype(np.float32), rtol=1e-5, atol=1e-5)
        varying = std > 0
        np.testing.assert_allclose(site.X_train[:, varying].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(site.X_train[:, varying].std(axis=0, ddof=1), 1, atol=1e-4)


def test_pooled_site_uses_pooled_training_statistics(heart_sites):
    pooled = pool_sites(heart_sites)
    assert (pooled.n_train, pooled.n_test) == (486, 254)
    raw = np.concatenate([s.table.X[s.train_index] for s in heart_sites])
    np.testing.assert_allclose(pooled.preprocessor.mean, raw.mean(axis=0))
    assert pooled.y_train.sum() == sum(s.y_train.sum() for s in heart_sites)


def test_carve_validation_takes_rows_from_the_training_part_only(heart_sites):
    site = heart_sites[1]
    carved = carve_validation(site, fraction=0.25, seed=0)
    assert set(carved.test_index) <= set(site.train_index)
    assert set(carved.train_index) | set(carved.test_index) == set(site.train_index)
    assert not set(carved.test_index) & set(site.test_index)
    assert carved.n_test == 43 and carved.n_train == 129
    raw = site.table.X[carved.train_index]
    np.testing.assert_allclose(carved.preprocessor.mean, raw.mean(axis=0))  # refitted, not the site's
    assert not np.array_equal(carve_validation(site, seed=1).test_index, carved.test_index)


def test_data_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDLEDGER_DATA", str(tmp_path))
    assert default_data_root() == tmp_path.resolve()
    with pytest.raises(DataError, match="not found.*FEDLEDGER_DATA"):
        load_fed_heart_disease()
    monkeypatch.delenv("FEDLEDGER_DATA")
    # without the variable: the shared folder beside the checkout, wherever the checkout is
    assert default_data_root() == (Path(__file__).resolve().parents[2].parent / "shared" / "data").resolve()


def test_edited_copy_fails_the_checksum(tmp_path):
    source = heart_paths()[0].parent
    target = tmp_path / "fed-heart-disease"
    shutil.copytree(source, target)
    (target / "processed.va.data").chmod(0o644)
    with (target / "processed.va.data").open("a") as handle:
        handle.write("63,1,4,140,260,0,1,112,1,3,2,?,?,2\n")
    with pytest.raises(DataError, match="processed.va.data: sha256"):
        load_fed_heart_disease(tmp_path)
    assert len(heart_paths(tmp_path, verify=False)) == 4  # the check is what refused it


# -- generic CSV loader --------------------------------------------------------------------------

CSV = """age,color,score,label
30,1,0.5,0
40,2,?,1
50,3,1.5,1
60,1,2.5,0
35,2,0.7,1
45,3,1.1,0
55,1,?,1
65,2,2.0,0
"""


def write_csv(tmp_path, text=CSV):
    path = tmp_path / "site.csv"
    path.write_text(text)
    return path


def test_csv_with_header_drop_missing_and_one_hot(tmp_path):
    schema = CsvSchema(label="label", categorical={"color": (1.0, 2.0, 3.0)}, missing="drop")
    table = read_table(write_csv(tmp_path), schema)
    assert table.feature_names == ("age", "score", "color_2", "color_3")
    assert len(table) == 6  # two rows with "?" dropped
    assert table.X[0].tolist() == [30, 0.5, 0, 0] and table.X[1].tolist() == [50, 1.5, 0, 1]
    assert table.y.tolist() == [0, 1, 0, 1, 0, 0]


def test_csv_impute_fits_on_training_rows_only(tmp_path):
    schema = CsvSchema(label="label", categorical={"color": (1.0, 2.0, 3.0)}, missing="impute_mean")
    site = load_csv_site(write_csv(tmp_path), schema, train_fraction=0.5, seed=0, stratify=False, normalize=False)
    score = site.table.feature_names.index("score")
    train_scores = site.table.X[site.train_index, score]
    expected_fill = np.nanmean(train_scores)
    assert site.preprocessor.fill[score] == pytest.approx(expected_fill)
    assert np.isfinite(site.X_train).all() and np.isfinite(site.X_test).all()
    assert site.n_train + site.n_test == 8


def test_csv_label_threshold_and_drop_columns(tmp_path):
    schema = CsvSchema(label="score", drop=("label",), missing="drop", label_threshold=1.0)
    table = read_table(write_csv(tmp_path), schema)
    assert table.feature_names == ("age", "color")
    assert table.y.tolist() == [0, 1, 1, 0, 1, 1]


@pytest.mark.parametrize(
    "text, schema, message",
    [
        (CSV.replace("40,2,?,1", "40,2,abc,1"), CsvSchema(label="label"), "line 3: column 'score' is not a number"),
        (CSV.replace("50,3,1.5,1", "50,9,1.5,1"), CsvSchema(label="label", categorical={"color": (1.0, 2.0, 3.0)}), "outside its levels"),
        (CSV.replace("50,3,1.5,1", "50,3,1.5"), CsvSchema(label="label"), "line 4: 3 fields, expected 4"),
        (CSV, CsvSchema(label="outcome"), "column 'outcome' is not among"),
        (CSV.replace("30,1,0.5,0", "30,1,0.5,2"), CsvSchema(label="label"), "must be 0/1"),
        ("age,label\n", CsvSchema(label="label"), "no data rows"),
    ],
)
def test_csv_errors_are_one_clear_line(tmp_path, text, schema, message):
    with pytest.raises(DataError, match=message) as info:
        read_table(write_csv(tmp_path, text), schema)
    assert "\n" not in str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_table(tmp_path / "missing.csv", CsvSchema(label="y"))


def test_split_sizes_and_errors():
    assert split_sizes(303, 0.66) == (199, 104)
    assert split_sizes(46, 0.66) == (30, 16)
    assert split_sizes(50, 0.7) == (35, 15)  # 1.0 - 0.7 = 0.30000000000000004 must not give 16
    with pytest.raises(DataError):
        split_sizes(10, 1.5)
    with pytest.raises(DataError, match="fewer than 2"):
        train_test_split_indices(10, train_fraction=0.5, seed=0, stratify=np.array([0] * 9 + [1]))


def test_split_is_deterministic_per_seed():
    a = train_test_split_indices(50, train_fraction=0.7, seed=1)
    b = train_test_split_indices(50, train_fraction=0.7, seed=1)
    c = train_test_split_indices(50, train_fraction=0.7, seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_a_column_constant_on_training_rows_does_not_explode():
    from fedcore.preprocessing import fit_preprocessor

    X_train = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
    pre = fit_preprocessor(X_train)
    out = pre.transform(np.array([[3.0, 1.0]]))
    assert out[0, 0] == 0.0
    assert out[0, 1] == 1.0  # centred on 0, scaled by 1: not 1e9
