"""Binary-classification metrics as pure functions of labels and predicted probabilities.

Every metric here is "higher is better" when used through :func:`score`, so a scorer can compare
models without knowing which metric the task chose.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedcore.errors import DataError

EPS = 1e-7  # probabilities are clipped to [EPS, 1-EPS] before taking logs


def _check(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_prob, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise DataError(f"labels have {y.size} values but predictions have {p.size}")
    if y.size == 0:
        raise DataError("cannot score an empty set")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("labels must be 0 or 1")
    if not np.isfinite(p).all():
        raise DataError("predictions contain NaN or Inf")
    return y, p


def accuracy(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows where ``y_prob > threshold`` equals the label.

    Parameters
    ----------
    y_true : np.ndarray, shape (n,)
        0/1 labels.
    y_prob : np.ndarray, shape (n,)
        Predicted probabilities of class 1.
    """
    y, p = _check(y_true, y_prob)
    return float(np.mean((p > threshold) == (y == 1.0)))


def auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties count one half).

    Returns 0.5 when only one class is present (the curve is undefined; 0.5 is "no skill").
    """
    y, p = _check(y_true, y_prob)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = _average_ranks(p)
    return float((ranks[y == 1.0].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to ``[EPS, 1-EPS]``."""
    y, p = _check(y_true, y_prob)
    p = np.clip(p, EPS, 1.0 - EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def neg_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """``-log_loss``: the loss as a higher-is-better score."""
    return -log_loss(y_true, y_prob)


#: Metrics that are a mean over rows (:func:`row_scores`); AUC ranks pairs of rows and is not.
ROW_METRICS = ("accuracy", "neg_loss")


def row_scores(metric: str, y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """Each row's share of a metric that is a mean over rows: ``score(metric, y, p) == mean(row_scores(...))``.

    Returns
    -------
    np.ndarray, shape (n,), float64
        ``"accuracy"``: 1.0 where the row is classified right, else 0.0; ``"neg_loss"``: the row's
        ``y log p + (1 - y) log(1 - p)`` (probabilities clipped as in :func:`log_loss`).

    Raises
    ------
    DataError
        For a metric that is not a mean over rows (``"auc"``).
    """
    y, p = _check(y_true, y_prob)
    if metric == "accuracy":
        return ((p > 0.5) == (y == 1.0)).astype(np.float64)
    if metric == "neg_loss":
        p = np.clip(p, EPS, 1.0 - EPS)
        return y * np.log(p) + (1.0 - y) * np.log1p(-p)
    raise DataError(f"metric {metric!r} is not a mean over rows; choose one of {', '.join(ROW_METRICS)}")


METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "auc": auc,
    "neg_loss": neg_loss,
}


def score(metric: str, y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The task's metric by name (``"accuracy"``, ``"auc"``, ``"neg_loss"``), higher is better."""
    try:
        function = METRIC_FUNCTIONS[metric]
    except KeyError:
        raise DataError(f"unknown metric {metric!r}; known: {', '.join(METRIC_FUNCTIONS)}") from None
    return function(y_true, y_prob)


def all_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """Accuracy, AUC and log loss together (for reports)."""
    return {"accuracy": accuracy(y_true, y_prob), "auc": auc(y_true, y_prob), "loss": log_loss(y_true, y_prob)}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], values.size]
    average = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks
