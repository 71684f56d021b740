"""Raw data sets as benchmark sites: source-file parsing, FLamby's splits, per-site preprocessing.

The pipeline is a chain of pure steps:

1. :func:`read_table` parses a raw source file (header-less or headed, missing tokens such as ``?``, dropped
   columns, fixed one-hot levels, a label to threshold) under a :class:`CsvSchema` into a :class:`Table` of raw
   features. Task tables (headed, numeric, what institutions hold) are read by :mod:`fedcore.tables` instead;
2. :func:`fedcore.splits.train_test_split_indices` splits rows (scikit-learn's ``train_test_split`` reproduced
   exactly, stratified or not);
3. :func:`prepare_site` imputes and standardizes (:mod:`fedcore.preprocessing`) with statistics fitted on the
   site's own training rows only, giving a :class:`SiteData` ready for training.

Nothing here sends data anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedcore.errors import DataError
from fedcore.preprocessing import Preprocessor, fit_preprocessor
from fedcore.splits import flamby_stratify, train_test_split_indices
from fedcore.tables import read_csv_rows

DATA_ENV = "FEDLEDGER_DATA"
MISSING_POLICIES = ("drop", "impute_mean", "impute_median")


def default_data_root() -> Path:
    """Where shared data sets live: ``$FEDLEDGER_DATA``, else ``<repo>/../shared/data``."""
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override).expanduser().resolve()
    repo_root = Path(__file__).resolve().parents[1]
    return (repo_root.parent / "shared" / "data").resolve()


# ---------------------------------------------------------------------------------------------
# Schema and raw table


@dataclass(frozen=True)
class CsvSchema:
    """How to read one CSV file into features and a binary label.

    Attributes
    ----------
    columns : tuple of str or None
        Column names in file order for header-less files; ``None`` reads them from the first row.
    label : str
        The target column.
    drop : tuple of str
        Columns ignored entirely (before missing-value handling).
    categorical : Mapping[str, tuple of float]
        Column -> its levels. Levels are fixed in the schema so every institution one-hot encodes
        the same way; a value outside them is an error.
    drop_first : bool
        Omit the first level's indicator (as ``pandas.get_dummies(drop_first=True)``).
    missing_tokens : tuple of str
        Cell values meaning "missing".
    missing : str
        ``"drop"`` rows with a missing feature, or impute with the training rows'
        ``"impute_mean"`` / ``"impute_median"``. Rows with a missing label are always dropped.
    label_threshold : float or None
        ``y = label > label_threshold``; ``None`` requires labels already 0/1.
    delimiter : str
    """

    label: str
    columns: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    categorical: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    drop_first: bool = True
    missing_tokens: tuple[str, ...] = ("?", "", "NA", "NaN", "nan")
    missing: str = "drop"
    label_threshold: float | None = None
    delimiter: str = ","

    def __post_init__(self) -> None:
        if self.missing not in MISSING_POLICIES:
            raise DataError(f"schema.missing must be one of {MISSING_POLICIES}, got {self.missing!r}")
        for column, levels in self.categorical.items():
            if len(levels) < 1 or len(set(levels)) != len(levels):
                raise DataError(f"schema.categorical[{column!r}] needs distinct levels")

    def feature_names(self, columns: Sequence[str]) -> tuple[str, ...]:
        """Output feature names: plain columns in file order, then one-hot indicators."""
        plain = [c for c in columns if c != self.label and c not in self.drop and c not in self.categorical]
        dummies = []
        for column in [c for c in columns if c in self.categorical]:
            levels = self.categorical[column][1:] if self.drop_first else self.categorical[column]
            dummies += [f"{column}_{_format_level(level)}" for level in levels]
        return tuple(plain + dummies)


@dataclass(frozen=True)
class Table:
    """Parsed rows of one site before splitting and scaling.

    Attributes
    ----------
    name : str
    feature_names : tuple of str, length d
    X : np.ndarray, shape (n, d), float64
        Raw feature values (one-hot expanded); NaN marks a missing value.
    y : np.ndarray, shape (n,), float32
        0/1 labels.
    """

    name: str
    feature_names: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: np.ndarray, name: str | None = None) -> Table:
        """The rows at ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Table(name or self.name, self.feature_names, self.X[index], self.y[index])


def read_table(path: str | Path, schema: CsvSchema, name: str | None = None) -> Table:
    """Parse a CSV file under ``schema``.

    Returns
    -------
    Table
        Rows in file order; with ``schema.missing == "drop"`` rows with any missing feature are
        gone, otherwise NaN marks them for imputation.
    """
    path = Path(path)
    _, numbered = read_csv_rows(path, delimiter=schema.delimiter)
    lines = [line for line, _ in numbered]
    rows = [row for _, row in numbered]
    if schema.columns is None:
        if not rows:
            raise DataError(f"{path.name}: empty file, expected a header row")
        columns, rows, lines = tuple(c.strip() for c in rows[0]), rows[1:], lines[1:]
    else:
        columns = tuple(schema.columns)
    for needed in [schema.label, *schema.drop, *schema.categorical]:
        if needed not in columns:
            raise DataError(f"{path.name}: column {needed!r} is not among {list(columns)}")
    if not rows:
        raise DataError(f"{path.name}: no data rows")
    missing = set(schema.missing_tokens)
    values = np.empty((len(rows), len(columns)), dtype=np.float64)
    for i, (line, row) in enumerate(zip(lines, rows)):
        if len(row) != len(columns):
            raise DataError(f"{path.name} line {line}: {len(row)} fields, expected {len(columns)}")
        for j, cell in enumerate(row):
            cell = cell.strip()
            if cell in missing:
                values[i, j] = np.nan
                continue
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path.name} line {line}: column {columns[j]!r} is not a number"
                ) from None
    return table_from_array(values, columns, schema, name or path.stem)


def table_from_array(values: np.ndarray, columns: Sequence[str], schema: CsvSchema, name: str) -> Table:
    """Apply ``schema`` to a raw ``(n, len(columns))`` float array (NaN = missing)."""
    columns = tuple(columns)
    position = {c: j for j, c in enumerate(columns)}
    keep = [c for c in columns if c not in schema.drop]
    values = values[:, [position[c] for c in keep]]
    position = {c: j for j, c in enumerate(keep)}

    label = values[:, position[schema.label]]
    features = [c for c in keep if c != schema.label]
    X_raw = values[:, [position[c] for c in features]]
    rows = ~np.isnan(label)
    if schema.missing == "drop":
        rows &= ~np.isnan(X_raw).any(axis=1)
    label, X_raw = label[rows], X_raw[rows]
    if label.size == 0:
        raise DataError(f"{name}: no rows left after dropping missing values")

    if schema.label_threshold is None:
        if not np.isin(label, (0.0, 1.0)).all():
            raise DataError(f"{name}: label {schema.label!r} must be 0/1 (or set label_threshold)")
        y = label.astype(np.float32)
    else:
        y = (label > schema.label_threshold).astype(np.float32)

    plain = [j for j, c in enumerate(features) if c not in schema.categorical]
    blocks = [X_raw[:, plain]]
    for j, column in enumerate(features):
        if column not in schema.categorical:
            continue
        levels = np.asarray(schema.categorical[column], dtype=np.float64)
        cells = X_raw[:, j]
        known = np.isnan(cells) | np.isin(cells, levels)
        if not known.all():
            bad = sorted(set(cells[~known].tolist()))
            raise DataError(f"{name}: column {column!r} has values {bad} outside its levels {levels.tolist()}")
        used = levels[1:] if schema.drop_first else levels
        onehot = (cells[:, None] == used[None, :]).astype(np.float64)
        onehot[np.isnan(cells)] = np.nan  # a missing category stays missing in every indicator
        blocks.append(onehot)
    X = np.concatenate(blocks, axis=1)
    return Table(name, schema.feature_names(keep), X, y)


def concat_tables(tables: Sequence[Table], name: str) -> Table:
    """Rows of several tables with identical feature names, one after the other."""
    names = {t.feature_names for t in tables}
    if len(names) != 1:
        raise DataError("cannot pool tables with different feature columns")
    return Table(
        name, tables[0].feature_names, np.concatenate([t.X for t in tables]), np.concatenate([t.y for t in tables])
    )


# ---------------------------------------------------------------------------------------------
# Splitting (scikit-learn's train_test_split, reproduced without depending on it)


# ---------------------------------------------------------------------------------------------
# Site data: split, imputed, standardized


@dataclass(frozen=True)
class SiteData:
    """One institution's data, split and preprocessed.

    Attributes
    ----------
    name : str
    feature_names : tuple of str, length d
    X_train : np.ndarray, shape (n_train, d), float32
    y_train : np.ndarray, shape (n_train,), float32
    X_test : np.ndarray, shape (n_test, d), float32
        The held-out part (a validation part after :func:`carve_validation`).
    y_test : np.ndarray, shape (n_test,), float32
    table : Table
        The raw rows the split refers to.
    train_index, test_index : np.ndarray of int64
        Rows of ``table`` in each part.
    preprocessor : Preprocessor
        Fitted on ``table.X[train_index]``.
    """

    name: str
    feature_names: tuple[str, ...]
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    table: Table
    train_index: np.ndarray
    test_index: np.ndarray
    preprocessor: Preprocessor

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def prepare_site(
    table: Table,
    train_index: np.ndarray,
    test_index: np.ndarray,
    *,
    impute: str = "drop",
    normalize: bool = True,
    epsilon: float = 1e-9,
    name: str | None = None,
) -> SiteData:
    """Fit the preprocessor on ``table``'s training rows and apply it to both parts."""
    train_index = np.asarray(train_index, dtype=np.int64)
    test_index = np.asarray(test_index, dtype=np.int64)
    if np.intersect1d(train_index, test_index).size:
        raise DataError(f"{table.name}: train and test rows overlap")
    preprocessor = fit_preprocessor(table.X[train_index], impute=impute, normalize=normalize, epsilon=epsilon)
    return SiteData(
        name=name or table.name,
        feature_names=table.feature_names,
        X_train=preprocessor.transform(table.X[train_index]),
        y_train=table.y[train_index].astype(np.float32),
        X_test=preprocessor.transform(table.X[test_index]),
        y_test=table.y[test_index].astype(np.float32),
        table=table,
        train_index=train_index,
        test_index=test_index,
        preprocessor=preprocessor,
    )


def load_csv_site(
    path: str | Path,
    schema: CsvSchema,
    *,
    train_fraction: float = 0.66,
    seed: int = 43,
    stratify: bool = True,
    normalize: bool = True,
    name: str | None = None,
) -> SiteData:
    """Read, split (stratified by label when possible) and preprocess one institution's CSV."""
    table = read_table(path, schema, name)
    strata = flamby_stratify(table.y) if stratify else None
    train_index, test_index = train_test_split_indices(
        len(table), train_fraction=train_fraction, seed=seed, stratify=strata
    )
    impute = schema.missing if schema.missing != "drop" else "drop"
    return prepare_site(table, train_index, test_index, impute=impute, normalize=normalize)


def carve_validation(site: SiteData, *, fraction: float = 0.25, seed: int = 0, normalize: bool = True) -> SiteData:
    """Split a site's *training* rows into train and validation; the test rows are not touched.

    The returned site's ``X_test``/``y_test`` are the validation rows and its preprocessor is
    refitted on the remaining training rows, so tuning never sees test data or test statistics.
    """
    y = site.table.y[site.train_index]
    inner_train, inner_val = train_test_split_indices(
        y.shape[0], train_fraction=1.0 - fraction, seed=seed, stratify=flamby_stratify(y)
    )
    impute = "impute_mean" if np.isnan(site.table.X).any() else "drop"
    return prepare_site(
        site.table,
        site.train_index[inner_train],
        site.train_index[inner_val],
        impute=impute,
        normalize=normalize,
        epsilon=site.preprocessor.epsilon,
        name=f"{site.name}/validation",
    )


def pool_sites(sites: Sequence[SiteData], *, name: str = "pooled", normalize: bool = True) -> SiteData:
    """All sites' rows in one site, scaled with statistics of the pooled training rows.

    This is the centralized baseline (FLamby's ``pooled=True``): train = union of the sites'
    training rows, test = union of their test rows, in site order.
    """
    table = concat_tables([s.table for s in sites], name)
    offsets = np.cumsum([0] + [len(s.table) for s in sites[:-1]])
    train_index = np.concatenate([s.train_index + o for s, o in zip(sites, offsets)])
    test_index = np.concatenate([s.test_index + o for s, o in zip(sites, offsets)])
    impute = "impute_mean" if np.isnan(table.X).any() else "drop"
    epsilon = sites[0].preprocessor.epsilon
    return prepare_site(table, train_index, test_index, impute=impute, normalize=normalize, epsilon=epsilon, name=name)


def _format_level(level: float) -> str:
    return str(int(level)) if float(level).is_integer() else str(level)
