"""Partitioners: cover every row once, honour their skew parameter, depend only on their seed."""

import numpy as np
import pytest

from fedcore.errors import DataError
from node.partition import (
    add_feature_noise,
    flip_labels,
    iid_partition,
    label_skew_partition,
    perturb_institutions,
    quantity_skew_partition,
    split_by_partition,
)


def assert_exact_cover(parts, n):
    rows = np.concatenate(parts)
    assert np.array_equal(np.sort(rows), np.arange(n))


def test_iid_partition_covers_rows_with_balanced_sizes():
    parts = iid_partition(103, 4, seed=0)
    assert_exact_cover(parts, 103)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 103


def test_iid_partition_depends_on_the_seed_only():
    a = iid_partition(50, 3, seed=1)
    b = iid_partition(50, 3, seed=1)
    c = iid_partition(50, 3, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_quantity_skew_small_alpha_is_more_unequal():
    def spread(alpha):
        ratios = []
        for seed in range(10):
            sizes = [len(p) for p in quantity_skew_partition(1000, 5, alpha=alpha, seed=seed, min_size=2)]
            ratios.append(max(sizes) / min(sizes))
        return np.median(ratios)

    parts = quantity_skew_partition(1000, 5, alpha=0.3, seed=0, min_size=10)
    assert_exact_cover(parts, 1000)
    assert min(len(p) for p in parts) >= 10
    assert spread(0.2) > 5 * spread(100.0)
    assert spread(100.0) < 1.5


def test_label_skew_small_alpha_concentrates_labels():
    y = np.repeat([0, 1, 2], 200)

    def majority_share(alpha):
        shares = []
        for seed in range(5):
            for part in label_skew_partition(y, 4, alpha=alpha, seed=seed, min_size=5):
                shares.append(np.bincount(y[part], minlength=3).max() / len(part))
        return np.mean(shares)

    parts = label_skew_partition(y, 4, alpha=0.5, seed=3, min_size=5)
    assert_exact_cover(parts, len(y))
    assert majority_share(0.1) > 0.75
    assert majority_share(1000.0) < 0.45


def test_label_skew_is_deterministic():
    y = np.random.default_rng(0).integers(0, 2, 300)
    a = label_skew_partition(y, 3, alpha=0.5, seed=9)
    b = label_skew_partition(y, 3, alpha=0.5, seed=9)
    assert all(np.array_equal(x, z) for x, z in zip(a, b))


def test_split_by_partition_returns_matching_rows():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10) % 2
    parts = iid_partition(10, 2, seed=0)
    pieces = split_by_partition(X, y, parts)
    for (X_k, y_k), rows in zip(pieces, parts):
        assert np.array_equal(X_k, X[rows]) and np.array_equal(y_k, y[rows])


def test_flip_labels_flips_exactly_the_rate_and_copies():
    y = np.zeros(200, dtype=np.int64)
    flipped = flip_labels(y, rate=0.15, seed=0)
    assert int(flipped.sum()) == 30
    assert int(y.sum()) == 0  # input untouched
    assert np.array_equal(flipped, flip_labels(y, rate=0.15, seed=0))
    assert np.array_equal(flip_labels(y, rate=0.0, seed=0), y)


def test_feature_noise_has_the_requested_scale():
    X = np.zeros((4000, 3), dtype=np.float32)
    noisy = add_feature_noise(X, sigma=0.5, seed=1)
    assert noisy.dtype == np.float32
    assert abs(noisy.std() - 0.5) < 0.02
    assert not X.any()  # input untouched


def test_perturb_institutions_is_per_institution():
    rng = np.random.default_rng(0)
    data = [(rng.normal(size=(50, 2)).astype(np.float32), rng.integers(0, 2, 50)) for _ in range(3)]
    two = perturb_institutions(data[:2], feature_noise=[0.0, 1.0], label_noise=[0.2, 0.0], seed=4)
    three = perturb_institutions(data, feature_noise=[0.0, 1.0, 0.5], label_noise=[0.2, 0.0, 0.0], seed=4)
    # adding an institution does not change the noise of the existing ones
    for (Xa, ya), (Xb, yb) in zip(two, three[:2]):
        assert np.array_equal(Xa, Xb) and np.array_equal(ya, yb)
    assert np.array_equal(two[0][0], data[0][0]) and (two[0][1] != data[0][1]).sum() == 10
    assert not np.array_equal(two[1][0], data[1][0]) and np.array_equal(two[1][1], data[1][1])


@pytest.mark.parametrize(
    "call",
    [
        lambda: iid_partition(3, 4, seed=0),
        lambda: iid_partition(10, 0, seed=0),
        lambda: quantity_skew_partition(10, 2, alpha=0.0, seed=0),
        lambda: quantity_skew_partition(10, 3, alpha=1.0, seed=0, min_size=4),
        lambda: label_skew_partition(np.zeros(10), 2, alpha=-1.0, seed=0),
        lambda: flip_labels(np.array([0, 2]), rate=0.5, seed=0),
        lambda: flip_labels(np.array([0, 1]), rate=1.5, seed=0),
        lambda: add_feature_noise(np.zeros(3), sigma=-1.0, seed=0),
        lambda: perturb_institutions([(np.zeros((2, 1)), np.zeros(2))], feature_noise=[0.1, 0.2], seed=0),
    ],
)
def test_bad_arguments_raise_data_error(call):
    with pytest.raises(DataError):
        call()
