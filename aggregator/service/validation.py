"""The validation set the aggregator scores with: a CSV whose bytes hash to the bounty's ``validationSetHash``.

The CSV has a header row naming at least the task's feature columns and its label column (other columns are
ignored); every feature is a finite number, every label 0 or 1. Features are used as they are: the sponsor
publishes them already prepared the way the task expects (scaled like the institutions' data).

The validation set must be disjoint from any test set that results are reported on: the sponsor carves it
from data no institution trains on and no report tests on. The aggregator cannot check that; it only checks
that the file is the one the bounty fixed on chain.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcore.errors import DataError
from fedcore.task import TaskSpec


@dataclass(frozen=True)
class ValidationSet:
    """Features ``X`` of shape ``(n, d)`` (float32, the task's column order), labels ``y`` of shape ``(n,)`` (float32 0/1)."""

    X: np.ndarray
    y: np.ndarray
    sha256: bytes

    def __len__(self) -> int:
        return int(self.y.shape[0])


def validation_set_hash(path: str | os.PathLike) -> bytes:
    """sha256 of the file's bytes: the ``validationSetHash`` a sponsor puts on chain."""
    return hashlib.sha256(Path(path).read_bytes()).digest()


def load_validation_set(path: str | os.PathLike, spec: TaskSpec) -> ValidationSet:
    """Read and check the validation CSV (hashing exactly the bytes that are parsed).

    Raises
    ------
    DataError
        One line: unreadable, a missing column, a non-numeric or non-finite value, a label not 0/1, no rows.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read validation set {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"validation set {path} is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise DataError(f"validation set {path} is empty: expected a header row")
    header = [name.strip() for name in header]
    wanted = [*spec.feature_columns, spec.label_column]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DataError(f"validation set {path} lacks column(s) {', '.join(missing)}")
    index = [header.index(name) for name in wanted]
    rows = []
    for line_number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"validation set {path} line {line_number}: {len(row)} fields, header has {len(header)}")
        values = []
        for name, i in zip(wanted, index):
            try:
                value = float(row[i])
            except ValueError:
                raise DataError(f"validation set {path} line {line_number}: column {name} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"validation set {path} line {line_number}: column {name} is not finite")
            values.append(value)
        if values[-1] not in (0.0, 1.0):
            raise DataError(f"validation set {path} line {line_number}: label {spec.label_column} must be 0 or 1")
        rows.append(values)
    if not rows:
        raise DataError(f"validation set {path} has no rows")
    table = np.asarray(rows, dtype=np.float64)
    return ValidationSet(
        X=table[:, :-1].astype(np.float32), y=table[:, -1].astype(np.float32), sha256=hashlib.sha256(raw).digest()
    )
