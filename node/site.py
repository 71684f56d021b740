"""An institution's own CSV, read for a task: the columns the task names, nothing else.

The file has a header row; it must contain every one of the task's ``feature_columns`` and its
``label_column`` (numeric, already encoded; the label 0 or 1). Other columns (record ids, notes)
are ignored and never parsed. Every cell of a used column must be a finite number: a missing,
non-numeric, NaN or Inf cell is an error naming the line and column, never the value (error
messages end up in logs, and logs carry no records).

The features are standardized with statistics of the institution's own rows
(:func:`node.data.fit_preprocessor`); nothing of the data leaves this module but the arrays.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcore.errors import DataError
from fedcore.task import TaskSpec
from node.data import Preprocessor, Table, fit_preprocessor


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


def read_site_table(
    path: str | Path, feature_columns: Sequence[str], label_column: str, *, name: str | None = None, delimiter: str = ","
) -> Table:
    """Parse the used columns of a headed CSV into a raw :class:`node.data.Table`.

    Returns
    -------
    Table
        ``X`` of shape (n, d) in ``feature_columns`` order (raw, float64), ``y`` (n,) float32 0/1.

    Raises
    ------
    DataError
        Unreadable file, no header, missing or duplicated columns, a row with the wrong number of
        fields, a missing / non-numeric / non-finite cell, a label other than 0 or 1, no rows.
    """
    path = Path(path)
    label = path.name
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{label}: empty file, expected a header row") from None
            header = [c.strip() for c in header]
            duplicates = sorted({c for c in header if header.count(c) > 1})
            if duplicates:
                raise DataError(f"{label}: duplicated column(s) {', '.join(duplicates)} in the header")
            wanted = [*feature_columns, label_column]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise DataError(
                    f"{label}: missing column(s) {', '.join(missing)} (the task needs {', '.join(wanted)})"
                )
            positions = [header.index(c) for c in wanted]
            rows: list[list[float]] = []
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise DataError(f"{label} line {line}: {len(row)} fields, the header has {len(header)}")
                values = []
                for column, j in zip(wanted, positions):
                    cell = row[j].strip()
                    if not cell:
                        raise DataError(f"{label} line {line}: column {column!r} is empty")
                    try:
                        value = float(cell)
                    except ValueError:
                        raise DataError(f"{label} line {line}: column {column!r} is not a number") from None
                    if not math.isfinite(value):
                        raise DataError(f"{label} line {line}: column {column!r} is NaN or infinite")
                    values.append(value)
                if values[-1] not in (0.0, 1.0):
                    raise DataError(f"{label} line {line}: label {label_column!r} must be 0 or 1")
                rows.append(values)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{label}: not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError(f"{label}: malformed CSV: {exc}") from None
    if not rows:
        raise DataError(f"{label}: no data rows")
    values = np.asarray(rows, dtype=np.float64)
    return Table(name or path.stem, tuple(feature_columns), values[:, :-1], values[:, -1].astype(np.float32))


def load_site(path: str | Path, spec: TaskSpec, *, name: str | None = None, normalize: bool = True) -> LocalSite:
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
    table = read_site_table(path, spec.feature_columns, spec.label_column, name=name)
    preprocessor = fit_preprocessor(table.X, impute="drop", normalize=normalize)
    return LocalSite(
        name=table.name,
        feature_names=table.feature_names,
        X=preprocessor.transform(table.X),
        y=table.y.astype(np.float32),
        preprocessor=preprocessor,
    )


__all__ = ["LocalSite", "load_site", "read_site_table"]
