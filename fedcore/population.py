"""The sponsor's target population: the task's scaler and the group weighting of the validation utility.

Pure functions over arrays, and the one reader of a validation set for a task. The task spec declares both
(:class:`fedcore.task.FeatureScaling`, :class:`fedcore.task.TargetPopulation`, so both are fixed by the task's hash
on chain); the aggregator, the auditor, the simulation and the demo all score through :func:`population_score`.

Why the sponsor's scaler comes from its own validation rows
------------------------------------------------------------
The validation set is, by definition, a sample of the population the sponsor pays to serve, and the sponsor holds
it: its per-feature mean and std (:func:`scaler_from_rows`) need no protocol step before round 1, reveal nothing of
any institution, and cannot be skewed by anyone but the sponsor, whose task (and so scaler) every institution sees
before it joins. Federated sums and sums of squares would be self-declared by the institutions, unverifiable, and a
single dishonest one could move everyone's scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedcore import metrics as fm
from fedcore.errors import DataError
from fedcore.tables import read_task_table
from fedcore.task import FeatureScaling, TargetPopulation, TaskSpec

#: ``FeatureScaling.source`` of a scaler fitted by :func:`scaler_from_rows` on the sponsor's validation rows.
SPONSOR_VALIDATION_SOURCE = "mean and std (ddof 1) of the sponsor's validation rows"


def scaler_from_rows(X: np.ndarray, *, source: str = SPONSOR_VALIDATION_SOURCE) -> FeatureScaling:
    """Per-feature mean and standard deviation (``ddof=1``) of raw rows, as the task's scaler.

    Parameters
    ----------
    X : np.ndarray, shape (n, d)
        Raw, finite feature values.

    Returns
    -------
    FeatureScaling
        A column constant on these rows (or a single row) gets std 1: it stays centred instead of exploding.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or not np.isfinite(X).all():
        raise DataError(f"a scaler needs finite rows of shape (n, d), got shape {X.shape}")
    mean = X.mean(axis=0)
    std = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(X.shape[1])
    std = np.where(std > 0, std, 1.0)
    return FeatureScaling(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), source=source)


def group_weights(groups: Sequence[str] | None, population: TargetPopulation) -> dict[str, float] | None:
    """Each group's weight in the utility, summing to 1; None for ``"pooled"`` (every row counts the same).

    Parameters
    ----------
    groups : sequence of str, length n, or None
        The validation rows' group values (None when the set has no group column).
    population : TargetPopulation

    Raises
    ------
    DataError
        A group weighting without groups, an empty group value, or (``"explicit"``) a validation group without a
        weight or a weighted group without validation rows.
    """
    if population.weighting == "pooled":
        return None
    if groups is None:
        raise DataError(f"the task weights validation groups ({population.weighting}) but the validation set has no "
                        f"group column {population.group_column!r}")
    present = sorted(set(groups))
    if not present or "" in present:
        raise DataError(f"validation group column {population.group_column!r} has an empty value")
    if population.weighting == "equal":
        return {g: 1.0 / len(present) for g in present}
    declared = dict(population.group_weights)
    unweighted = [g for g in present if g not in declared]
    if unweighted:
        raise DataError(f"validation group(s) {', '.join(unweighted)} have no weight in the task's population")
    empty = sorted(g for g, w in declared.items() if g not in present and w > 0)
    if empty:
        raise DataError(f"weighted group(s) {', '.join(empty)} have no validation rows")
    total = math.fsum(declared[g] for g in present)
    return {g: declared[g] / total for g in present}


def population_score(metric: str, y_true: np.ndarray, y_prob: np.ndarray, groups: Sequence[str] | None,
                     weights: Mapping[str, float] | None) -> float:
    """The metric over the sponsor's population: ``sum_g w_g * metric(group g's rows)``, or over all rows.

    Parameters
    ----------
    metric : str
        ``"accuracy"``, ``"auc"`` or ``"neg_loss"`` (higher is better).
    y_true, y_prob : np.ndarray, shape (n,)
    groups : sequence of str, length n, or None
    weights : Mapping[str, float] or None
        :func:`group_weights`; None scores every row the same (``groups`` ignored).

    Notes
    -----
    For accuracy and log loss, equal group weights are the row-weighted metric with row weight ``1 / (G n_g)``;
    for AUC, the mean of the groups' AUCs (a group of one class scores 0.5, no skill).
    """
    if weights is None:
        return fm.score(metric, y_true, y_prob)
    labels = np.asarray(groups)
    y, p = np.asarray(y_true), np.asarray(y_prob)
    if labels.shape != (y.shape[0],):
        raise DataError(f"{labels.size} group values for {y.shape[0]} validation rows")
    return math.fsum(w * fm.score(metric, y[labels == g], p[labels == g]) for g, w in sorted(weights.items())
                     if w > 0)


def population_standard_error(rows: np.ndarray, groups: Sequence[str] | None,
                              weights: Mapping[str, float] | None) -> np.ndarray:
    """Standard error, over the sponsor's validation rows, of quantities that are population means of per-row values.

    A quantity ``q = sum_g w_g * mean(x[rows of g])`` (or ``mean(x)`` pooled) is an estimate from one sample of the
    population; another sample of rows would give another ``q``. Its standard error is the stratified one,
    ``sqrt(sum_g w_g**2 * var_g(x) / n_g)`` (``var`` with ``ddof=1``; a group of one row adds nothing, its variance is
    unknown), ``std(x, ddof=1) / sqrt(n)`` pooled.

    Parameters
    ----------
    rows : np.ndarray, shape (k, n)
        ``k`` quantities' per-row values over the ``n`` validation rows.
    groups, weights
        As in :func:`population_score`.

    Returns
    -------
    np.ndarray, shape (k,)
    """
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise DataError(f"per-row values must be a finite (k, n) array, got shape {x.shape}")
    if weights is None:
        strata = [(1.0, np.ones(x.shape[1], dtype=bool))]
    else:
        labels = np.asarray(groups)
        if labels.shape != (x.shape[1],):
            raise DataError(f"{labels.size} group values for {x.shape[1]} validation rows")
        strata = [(w, labels == g) for g, w in sorted(weights.items()) if w > 0]
    variance = np.zeros(x.shape[0])
    for w, member in strata:
        count = int(member.sum())
        if count > 1:
            variance += w * w * x[:, member].var(axis=1, ddof=1) / count
    return np.sqrt(variance)


@dataclass(frozen=True)
class ValidationSet:
    """The sponsor's validation set as every role scores on it.

    Attributes
    ----------
    X : np.ndarray, shape (n, d), float32
        Features in the task's order, scaled with the task's scaler.
    y : np.ndarray, shape (n,), float32
        0/1 labels.
    groups : tuple of str or None
        The group column's value per row (None when the task's population names no group column).
    weights : dict[str, float] or None
        :func:`group_weights` under the task's population (None: pooled).
    sha256 : bytes
        Digest of the file's exact bytes (the bounty's ``validationSetHash``).
    """

    X: np.ndarray
    y: np.ndarray
    groups: tuple[str, ...] | None
    weights: dict[str, float] | None
    sha256: bytes

    def __len__(self) -> int:
        return int(self.y.shape[0])


def load_validation_set(path: str | os.PathLike, spec: TaskSpec) -> ValidationSet:
    """Read the validation CSV for ``spec`` (:func:`fedcore.tables.read_task_table`), scale it with the task's
    scaler and resolve the task's group weights on it.

    Raises
    ------
    DataError
        One line: what the reader refuses (missing column, bad cell, ...), or groups that do not fit the task's
        population (:func:`group_weights`).
    """
    group = spec.population.group_column
    table = read_task_table(path, spec.feature_columns, spec.label_column, dtype=np.float64,
                            extra_columns=(group,) if group else ())
    groups = table.extra[group] if group else None
    try:
        weights = group_weights(groups, spec.population)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    return ValidationSet(X=spec.scaling.transform(table.features), y=table.labels, groups=groups, weights=weights,
                         sha256=table.sha256)


__all__ = [
    "SPONSOR_VALIDATION_SOURCE",
    "ValidationSet",
    "group_weights",
    "load_validation_set",
    "population_score",
    "population_standard_error",
    "scaler_from_rows",
]
