"""An institution's own CSV, read for a task: the columns the task names, nothing else.

The file is a task table (:mod:`fedcore.tables`: a header with the task's ``feature_columns`` and its
``label_column``, numeric and already encoded, the label 0 or 1; other columns ignored; a bad cell is an
error naming the line and column, never the value).

The features are standardized with the task's scaler (``spec.scaling``, published by the sponsor and fixed by the
task's hash), never with statistics of the institution's own rows: the model is trained on the scale the
aggregator scores it on. Nothing of the data leaves this module but the arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcore.tables import read_task_table
from fedcore.task import FeatureScaling, TaskSpec


@dataclass(frozen=True)
class LocalSite:
    """One institution's training data for a task.

    Attributes
    ----------
    name : str
    feature_names : tuple of str, length d
        The task's feature columns, in the task's order.
    X : np.ndarray, shape (n, d), float32
        Features scaled with the task's scaler.
    y : np.ndarray, shape (n,), float32
        0/1 labels.
    scaling : FeatureScaling
        The task's scaler (apply it to any other rows of this site, e.g. a test part).
    """

    name: str
    feature_names: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    scaling: FeatureScaling

    @property
    def n_rows(self) -> int:
        return int(self.y.shape[0])


def load_site(path: str | os.PathLike, spec: TaskSpec, *, name: str | None = None) -> LocalSite:
    """Read ``path`` for ``spec`` and scale it with the task's scaler.

    Parameters
    ----------
    path : path
        The institution's CSV (header row, the task's feature and label columns, numeric).
    spec : TaskSpec
        Which columns to use, in which order.
    name : str, optional
        Site name (default: the file's stem).
    """
    # float64: scale the exact values in the file, as the aggregator scales the validation set
    table = read_task_table(path, spec.feature_columns, spec.label_column, dtype=np.float64)
    return LocalSite(
        name=name or Path(path).stem,
        feature_names=table.feature_columns,
        X=spec.scaling.transform(table.features),
        y=table.labels,
        scaling=spec.scaling,
    )


__all__ = ["LocalSite", "load_site"]
