"""Seeded row splits a node and the data sets both need: shuffled, optionally stratified, identical to
scikit-learn's ``train_test_split`` row for row (without depending on it)."""

from __future__ import annotations

import math

import numpy as np

from fedcore.errors import DataError


def split_sizes(n_samples: int, train_fraction: float) -> tuple[int, int]:
    """``(n_train, n_test)`` as ``train_test_split(train_size=f, test_size=1.0 - f)`` computes them.

    ``n_train = floor(f n)``, ``n_test = ceil((1 - f) n)``, capped so the two never exceed ``n``.
    """
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    n_test = math.ceil((1.0 - train_fraction) * n_samples)
    n_train = math.floor(train_fraction * n_samples)
    if n_train < 1 or n_test < 1:
        raise DataError(f"{n_samples} rows are too few for a {train_fraction:g} train split")
    if n_train + n_test > n_samples:
        # float noise (1.0 - 0.7 = 0.30000000000000004) where scikit-learn would refuse: the
        # test part takes the remaining rows, as when only train_size is given
        n_test = n_samples - n_train
    return n_train, n_test


def train_test_split_indices(
    n_samples: int,
    *,
    train_fraction: float,
    seed: int,
    stratify: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (optionally stratified) split, identical to scikit-learn's.

    ``train_test_split(np.arange(n), train_size=f, test_size=1.0 - f, random_state=seed,
    shuffle=True, stratify=stratify)`` returns the same two index arrays in the same order.

    Parameters
    ----------
    n_samples : int
    train_fraction : float
    seed : int
        Seeds a ``numpy.random.RandomState`` (legacy Mersenne Twister), as scikit-learn does.
    stratify : np.ndarray of shape (n_samples,), optional
        Class of each row; each class is split in proportion.

    Returns
    -------
    (train_index, test_index) : tuple of np.ndarray of int64
    """
    n_train, n_test = split_sizes(n_samples, train_fraction)
    rng = np.random.RandomState(seed)
    if stratify is None:
        permutation = rng.permutation(n_samples)
        return permutation[n_test : n_test + n_train].astype(np.int64), permutation[:n_test].astype(np.int64)

    labels = np.asarray(stratify).reshape(-1)
    if labels.shape[0] != n_samples:
        raise DataError(f"stratify has {labels.shape[0]} labels for {n_samples} rows")
    classes, y_index = np.unique(labels, return_inverse=True)
    class_counts = np.bincount(y_index)
    if class_counts.min() < 2:
        raise DataError("cannot stratify: a class has fewer than 2 rows")
    if n_train < len(classes) or n_test < len(classes):
        raise DataError("cannot stratify: fewer rows per part than classes")
    class_rows = np.split(np.argsort(y_index, kind="mergesort"), np.cumsum(class_counts)[:-1])
    train_per_class = _approximate_mode(class_counts, n_train, rng)
    test_per_class = _approximate_mode(class_counts - train_per_class, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for rows, n_tr, n_te in zip(class_rows, train_per_class, test_per_class):
        shuffled = rows[rng.permutation(rows.shape[0])]
        train.extend(shuffled[:n_tr])
        test.extend(shuffled[n_tr : n_tr + n_te])
    return rng.permutation(train).astype(np.int64), rng.permutation(test).astype(np.int64)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Per-class draw counts closest to proportional; ties among remainders broken by ``rng``.

    Same arithmetic and the same random draws as scikit-learn's helper of that name, so a
    stratified split comes out row for row identical.
    """
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (candidates,) = np.where(remainder == value)
            add_now = min(len(candidates), need_to_add)
            chosen = rng.choice(candidates, size=add_now, replace=False)
            floored[chosen] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def flamby_stratify(y: np.ndarray) -> np.ndarray | None:
    """FLamby's rule: stratify by label only if both classes have more than 2 rows."""
    classes, counts = np.unique(y, return_counts=True)
    return y if len(classes) > 1 and (counts > 2).all() else None
