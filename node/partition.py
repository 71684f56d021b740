"""Turning one dataset into n simulated institutions (pure functions, explicit seeds).

Partitioners return a list of row-index arrays, one per institution, that together cover every
row exactly once; :func:`split_by_partition` applies them. Perturbations (feature noise, label
noise) return new arrays and leave their inputs untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedcore.errors import DataError


def _check_parts(n_samples: int, n_parts: int, min_size: int = 1) -> None:
    if not isinstance(n_parts, int) or n_parts < 1:
        raise DataError(f"n_parts must be a positive integer, got {n_parts!r}")
    if n_samples < n_parts * min_size:
        raise DataError(f"{n_samples} rows cannot give {n_parts} institutions at least {min_size} rows each")


def iid_partition(n_samples: int, n_parts: int, *, seed: int) -> list[np.ndarray]:
    """Shuffle rows and deal them into ``n_parts`` near-equal parts (sizes differ by at most 1).

    Returns
    -------
    list of np.ndarray of int64
        Sorted row indices per institution.
    """
    _check_parts(n_samples, n_parts)
    permutation = np.random.default_rng(seed).permutation(n_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(permutation, n_parts)]


def quantity_skew_partition(
    n_samples: int, n_parts: int, *, alpha: float, seed: int, min_size: int = 1
) -> list[np.ndarray]:
    """Random rows, but sizes drawn from ``Dirichlet(alpha)``: small alpha = very unequal sizes.

    Each institution first gets ``min_size`` rows; the rest are shared by the drawn proportions.
    """
    _check_parts(n_samples, n_parts, min_size)
    if alpha <= 0:
        raise DataError(f"alpha must be > 0, got {alpha!r}")
    rng = np.random.default_rng(seed)
    proportions = rng.dirichlet(np.full(n_parts, float(alpha)))
    sizes = min_size + _largest_remainder(proportions, n_samples - n_parts * min_size)
    permutation = rng.permutation(n_samples)
    bounds = np.cumsum(sizes)[:-1]
    return [np.sort(part).astype(np.int64) for part in np.split(permutation, bounds)]


def label_skew_partition(
    y: np.ndarray, n_parts: int, *, alpha: float, seed: int, min_size: int = 1, max_tries: int = 100
) -> list[np.ndarray]:
    """Label skew: each class's rows are shared among institutions by ``Dirichlet(alpha)``.

    Small ``alpha`` gives institutions dominated by one class; large ``alpha`` approaches IID.
    Draws are repeated (same rng stream) until every institution has ``min_size`` rows.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Class of each row (any hashable values).
    """
    y = np.asarray(y).reshape(-1)
    _check_parts(y.shape[0], n_parts, min_size)
    if alpha <= 0:
        raise DataError(f"alpha must be > 0, got {alpha!r}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
        for cls in classes:
            rows = rng.permutation(np.flatnonzero(y == cls))
            sizes = _largest_remainder(rng.dirichlet(np.full(n_parts, float(alpha))), rows.shape[0])
            for k, chunk in enumerate(np.split(rows, np.cumsum(sizes)[:-1])):
                parts[k].append(chunk)
        result = [np.sort(np.concatenate(chunks)).astype(np.int64) for chunks in parts]
        if min(r.shape[0] for r in result) >= min_size:
            return result
    raise DataError(f"no label-skew draw gave every institution {min_size} rows in {max_tries} tries; raise alpha")


def split_by_partition(
    X: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(X[rows], y[rows]) for rows in parts]``."""
    return [(X[rows], y[rows]) for rows in parts]


def add_feature_noise(X: np.ndarray, *, sigma: float, seed: int) -> np.ndarray:
    """``X + N(0, sigma^2)`` noise on every cell (a site with noisier measurements)."""
    if sigma < 0:
        raise DataError(f"sigma must be >= 0, got {sigma!r}")
    X = np.asarray(X)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=X.shape)
    return (X + noise).astype(X.dtype if X.dtype.kind == "f" else np.float64)


def flip_labels(y: np.ndarray, *, rate: float, seed: int) -> np.ndarray:
    """Binary labels with a ``rate`` share of rows (exactly ``round(rate * n)``) flipped."""
    if not 0.0 <= rate <= 1.0:
        raise DataError(f"label-noise rate must be in [0, 1], got {rate!r}")
    y = np.asarray(y)
    if not np.isin(y, (0, 1)).all():
        raise DataError("flip_labels needs 0/1 labels")
    n_flip = int(round(rate * y.shape[0]))
    rows = np.random.default_rng(seed).choice(y.shape[0], size=n_flip, replace=False)
    flipped = y.copy()
    flipped[rows] = 1 - flipped[rows]
    return flipped


def perturb_institutions(
    datasets: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    feature_noise: Sequence[float] | None = None,
    label_noise: Sequence[float] | None = None,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-institution feature noise ``sigma_k`` and label-noise rate ``r_k``.

    Institution ``k`` uses the seeds ``(seed, k)`` so adding an institution does not change the
    noise of the others.
    """
    n = len(datasets)
    sigmas = list(feature_noise) if feature_noise is not None else [0.0] * n
    rates = list(label_noise) if label_noise is not None else [0.0] * n
    if len(sigmas) != n or len(rates) != n:
        raise DataError(f"need one noise level per institution ({n})")
    result = []
    for k, ((X, y), sigma, rate) in enumerate(zip(datasets, sigmas, rates)):
        stream = np.random.SeedSequence([seed, k]).generate_state(2)
        X_k = add_feature_noise(X, sigma=sigma, seed=int(stream[0])) if sigma > 0 else X
        y_k = flip_labels(y, rate=rate, seed=int(stream[1])) if rate > 0 else y
        result.append((X_k, y_k))
    return result


def _largest_remainder(proportions: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total``, as close as possible to ``proportions * total``."""
    raw = proportions * total
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        # ties broken by index: stable argsort on the negated remainders
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts
