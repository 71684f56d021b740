"""The validation set the aggregator scores with: a CSV whose bytes hash to the bounty's ``validationSetHash``.

The CSV is a task table (:mod:`fedcore.tables`, read as every role reads it): a header row naming at least the
task's feature columns and its label column (other columns are ignored); every feature is a finite number, every
label 0 or 1. Features are used as they are: the sponsor publishes them already prepared the way the task expects
(scaled like the institutions' data).

The validation set must be disjoint from any test set that results are reported on: the sponsor carves it
from data no institution trains on and no report tests on. The aggregator cannot check that; it only checks
that the file is the one the bounty fixed on chain.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcore.tables import read_task_table
from fedcore.task import TaskSpec


@dataclass(frozen=True)
class ValidationSet:
    """Features ``X`` of shape ``(n, d)`` (float32, the task's column order),
    labels ``y`` of shape ``(n,)`` (float32 0/1)."""

    X: np.ndarray
    y: np.ndarray
    sha256: bytes

    def __len__(self) -> int:
        return int(self.y.shape[0])


def validation_set_hash(path: str | os.PathLike) -> bytes:
    """sha256 of the file's bytes: the ``validationSetHash`` a sponsor puts on chain."""
    return hashlib.sha256(Path(path).read_bytes()).digest()


def load_validation_set(path: str | os.PathLike, spec: TaskSpec) -> ValidationSet:
    """Read and check the validation CSV (a task table, :func:`fedcore.tables.read_task_table`), hashing exactly
    the bytes that are parsed.

    Raises
    ------
    DataError
        One line naming the file, the line and the column: unreadable, a missing column, a non-numeric or
        non-finite value, a label not 0/1, no rows.
    """
    table = read_task_table(path, spec.feature_columns, spec.label_column)
    return ValidationSet(X=table.features, y=table.labels, sha256=table.sha256)
