"""Standardization of a site's features, fitted on that site's own training rows: FLamby's protocol.

The benchmarks (``bench/heart.py``, :mod:`fedsets.data`) scale each center with its own statistics, as FLamby's
published figures do, so they stay comparable. A deployment never does: the node, the aggregator, the auditor and
the demo scale with the scaler the sponsor publishes in the task spec (:class:`fedcore.task.FeatureScaling`,
:mod:`fedcore.population`), since no party may need another's private statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedcore.errors import DataError


@dataclass(frozen=True)
class Preprocessor:
    """Imputation values and standardization fitted on one site's training rows.

    ``transform(X) = (fill_nan(X) - mean) / (std + epsilon)``, std with ``ddof=1`` (as
    ``torch.std``, which FLamby uses). A column constant on the training rows gets std 1, not 0: FLamby's
    ``1 / epsilon`` would turn an unseen value there into about 1e9 (its own split has no such value).
    """

    fill: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    epsilon: float = 1e-9

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.where(np.isnan(X), self.fill[None, :], X)
        return ((X - self.mean[None, :]) / (self.std[None, :] + self.epsilon)).astype(np.float32)


def fit_preprocessor(
    X_train: np.ndarray, *, impute: str = "drop", normalize: bool = True, epsilon: float = 1e-9
) -> Preprocessor:
    """Fit imputation and scaling on training rows only.

    Parameters
    ----------
    X_train : np.ndarray, shape (n_train, d)
        Raw features, NaN for missing values.
    impute : str
        ``"impute_mean"``, ``"impute_median"``, or ``"drop"`` (no NaN expected).
    normalize : bool
        ``False`` gives the identity scaling (mean 0, std 1, epsilon 0).
    """
    d = X_train.shape[1]
    if impute == "impute_median":
        fill = _nan_stat(np.nanmedian, X_train)
    elif impute == "impute_mean":
        fill = _nan_stat(np.nanmean, X_train)
    else:
        if np.isnan(X_train).any():
            raise DataError("training rows contain missing values but the schema imputes nothing")
        fill = np.zeros(d)
    if not normalize:
        return Preprocessor(fill, np.zeros(d), np.ones(d), 0.0)
    filled = np.where(np.isnan(X_train), fill[None, :], X_train)
    mean = filled.mean(axis=0)
    std = filled.std(axis=0, ddof=1) if filled.shape[0] > 1 else np.zeros(d)
    std = np.where(std > 0, std, 1.0)  # a constant column stays centred instead of exploding
    return Preprocessor(fill, mean, std, epsilon)


def _nan_stat(function, X: np.ndarray) -> np.ndarray:
    column_all_nan = np.isnan(X).all(axis=0)
    safe = np.where(column_all_nan[None, :], 0.0, X)
    return np.where(column_all_nan, 0.0, function(safe, axis=0))


__all__ = ["Preprocessor", "fit_preprocessor"]
