"""The one reader and writer of task tables: headed CSV files of a task's feature and label columns.

Every role reads these files here (the node its site data, the aggregator and the auditor the validation set,
the sponsor before fixing its hash on chain, the demo its users' files), so one file is accepted or rejected
the same way by all of them:

- encoding: UTF-8, a leading byte-order mark accepted (spreadsheets write one);
- a header row naming at least the task's feature columns and its label column; other columns are ignored,
  or kept as text when asked for (``extra_columns``: a site or group column that is not a feature);
- every used cell a finite number, every label 0 or 1, at least one data row; blank lines are skipped;
- a bad file raises a one-line :class:`~fedcore.errors.DataError` naming the file, the line and the column,
  never the cell's value (error messages reach logs, and logs carry no records).

Writing formats integers without ``.0`` and any other float with ``repr``, which reads back as the same float64.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedcore.errors import DataError
from fedcore.files import write_atomic

ENCODING = "utf-8-sig"  # reads UTF-8 with or without a byte-order mark
DELIMITER = ","


@dataclass(frozen=True)
class TaskTable:
    """The used columns of one task table.

    Attributes
    ----------
    features : np.ndarray, shape (n, d)
        The feature columns in the task's order (float32 unless the reader asked for another dtype).
    labels : np.ndarray, shape (n,), float32
        0/1 labels.
    feature_columns : tuple of str, length d
    label_column : str
    extra : Mapping[str, tuple of str]
        Other columns the caller asked to keep, as text, one value per row.
    sha256 : bytes
        Digest of the file's exact bytes (what a validation-set hash on chain is).
    """

    features: np.ndarray
    labels: np.ndarray
    feature_columns: tuple[str, ...]
    label_column: str
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sha256: bytes = b""

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def read_csv_rows(path: str | os.PathLike, *, delimiter: str = DELIMITER) -> tuple[bytes, list[tuple[int, list[str]]]]:
    """Decode a CSV file under the one encoding rule.

    Returns
    -------
    (raw, rows)
        The file's bytes, and its non-blank rows as ``(line number, cells)``, first line 1.

    Raises
    ------
    DataError
        Unreadable file, not UTF-8, malformed CSV.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode(ENCODING)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        line = 1
        for row in reader:
            if row and any(cell.strip() for cell in row):
                rows.append((line, row))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: malformed CSV: {exc}") from None
    return raw, rows


def read_header(path: str | os.PathLike) -> tuple[str, ...]:
    """The column names of a task table's header row (stripped)."""
    _, rows = read_csv_rows(path)
    if not rows:
        raise DataError(f"{path}: empty file, expected a header row")
    return _header(path, rows[0][1])


def _header(path: str | os.PathLike, cells: list[str]) -> tuple[str, ...]:
    header = tuple(cell.strip() for cell in cells)
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise DataError(f"{path} line 1: duplicated column(s) {', '.join(duplicates)} in the header")
    return header


def _number(path: str | os.PathLike, line: int, column: str, cell: str) -> float:
    cell = cell.strip()
    if not cell:
        raise DataError(f"{path} line {line}: column {column!r} is empty")
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path} line {line}: column {column!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path} line {line}: column {column!r} is NaN or infinite")
    return value


def read_task_table(
    path: str | os.PathLike,
    feature_columns: Sequence[str],
    label_column: str,
    *,
    extra_columns: Sequence[str] = (),
    dtype: type = np.float32,
) -> TaskTable:
    """Read and check a task table.

    Parameters
    ----------
    path : path
    feature_columns : sequence of str
        The task's features, in the order the returned array has them.
    label_column : str
    extra_columns : sequence of str
        Other columns to keep as text (not parsed, not features).
    dtype : numpy dtype
        Of ``features``: float32 for models and scoring; float64 to standardize raw values exactly.

    Raises
    ------
    DataError
        One line naming the file, the line and the column: missing or duplicated column, a row with the wrong
        number of fields, an empty / non-numeric / NaN / infinite cell, a label other than 0 or 1, no rows.
    """
    raw, rows = read_csv_rows(path)
    if not rows:
        raise DataError(f"{path}: empty file, expected a header row")
    header = _header(path, rows[0][1])
    wanted = [*feature_columns, label_column]
    missing = [c for c in [*wanted, *extra_columns] if c not in header]
    if missing:
        raise DataError(f"{path} line 1: missing column(s) {', '.join(missing)} (the task needs {', '.join(wanted)})")
    positions = [header.index(c) for c in wanted]
    values: list[list[float]] = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
        parsed = [_number(path, line, column, row[j]) for column, j in zip(wanted, positions)]
        if parsed[-1] not in (0.0, 1.0):
            raise DataError(f"{path} line {line}: label {label_column!r} must be 0 or 1")
        values.append(parsed)
    if not values:
        raise DataError(f"{path}: no data rows under the header")
    table = np.asarray(values, dtype=np.float64)
    extra = {c: tuple(row[header.index(c)].strip() for _, row in rows[1:]) for c in extra_columns}
    return TaskTable(
        features=table[:, :-1].astype(dtype),
        labels=table[:, -1].astype(np.float32),
        feature_columns=tuple(feature_columns),
        label_column=label_column,
        extra=extra,
        sha256=hashlib.sha256(raw).digest(),
    )


def format_number(value: float) -> str:
    """A float as text that reads back as the same float64: integers without ``.0``, anything else by ``repr``."""
    value = float(value)  # a float32 widens exactly
    negative_zero = value == 0.0 and math.copysign(1.0, value) < 0  # "-0.0", as "0" would lose the sign
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 and not negative_zero else repr(value)


def task_table_bytes(
    feature_columns: Sequence[str],
    label_column: str,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    extra: Mapping[str, Sequence[str]] | None = None,
) -> bytes:
    """A task table as UTF-8 bytes (no byte-order mark, LF line endings) that :func:`read_task_table` reads back.

    Parameters
    ----------
    features : np.ndarray, shape (n, d)
        Finite values.
    labels : np.ndarray, shape (n,)
        0/1.
    extra : Mapping[str, sequence of str], optional
        Text columns written after the label.
    """
    features = np.asarray(features, dtype=np.float64)
    if not np.isfinite(features).all():
        raise DataError("cannot write a task table with NaN or infinite features")
    extra = dict(extra or {})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*feature_columns, label_column, *extra])
    for i, (row, label) in enumerate(zip(features, labels)):
        writer.writerow([*(format_number(v) for v in row), str(int(label)), *(values[i] for values in extra.values())])
    return buffer.getvalue().encode("utf-8")


def write_task_table(
    path: str | os.PathLike,
    feature_columns: Sequence[str],
    label_column: str,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    extra: Mapping[str, Sequence[str]] | None = None,
) -> bytes:
    """Write :func:`task_table_bytes` to ``path`` atomically; returns the bytes written."""
    data = task_table_bytes(feature_columns, label_column, features, labels, extra=extra)
    write_atomic(Path(path), data)
    return data


__all__ = [
    "ENCODING",
    "TaskTable",
    "format_number",
    "read_csv_rows",
    "read_header",
    "read_task_table",
    "task_table_bytes",
    "write_task_table",
]
