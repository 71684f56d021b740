"""An institution's own CSV, read for a task: the columns the task names, nothing else.

The file is a task table (:mod:`fedcore.tables`: a header with the task's ``feature_columns`` and its
``label_column``, numeric and already encoded, the label 0 or 1; other columns ignored; a bad cell is an
error naming the line and column, never the value).

The features are standardized with statistics of the institution's own rows
(:func:`fedcore.preprocessing.fit_preprocessor`); nothing of the data leaves this module but the arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcore.preprocessing import Preprocessor, fit_preprocessor
from fedcore.tables import read_task_table
from fedcore.task import TaskSpec


@dataclass(frozen=True)
class LocalSite:
    """One institution's training data for a task.

    Attributes
    ----------
    name : str
    feature_names : tuple of str, length d
        The task's feature columns, in the task's order.
    X : np.ndarray, shape (n, d), float32
        Standardized features.
    y : np.ndarray, shape (n,), float32
        0/1 labels.
    preprocessor : Preprocessor
        Fitted on these rows.
    """

    name: str
    feature_names: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    preprocessor: Preprocessor

    @property
    def n_rows(self) -> int:
        return int(self.y.shape[0])


def load_site(path: str | os.PathLike, spec: TaskSpec, *, name: str | None = None, normalize: bool = True) -> LocalSite:
    """Read ``path`` for ``spec`` and standardize it with its own rows' mean and std.

    Parameters
    ----------
    path : path
        The institution's CSV (header row, the task's feature and label columns, numeric).
    spec : TaskSpec
        Which columns to use, in which order.
    name : str, optional
        Site name (default: the file's stem).
    normalize : bool
        Standardize features (``(x - mean) / std``, std with ddof=1), fitted on these rows.
    """
    # float64: standardize the exact values in the file, as the validation set's preparer does
    table = read_task_table(path, spec.feature_columns, spec.label_column, dtype=np.float64)
    preprocessor = fit_preprocessor(table.features, impute="drop", normalize=normalize)
    return LocalSite(
        name=name or Path(path).stem,
        feature_names=table.feature_columns,
        X=preprocessor.transform(table.features),
        y=table.labels,
        preprocessor=preprocessor,
    )


__all__ = ["LocalSite", "load_site"]
