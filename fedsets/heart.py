"""FLamby's Fed-Heart-Disease: the four hospitals' raw files, FLamby's cleaning, split and training settings.

Everything here follows FLamby (``flamby/datasets/fed_heart_disease`` and ``config_heart_disease.json``), so the
benchmark (``python -m bench.heart``), ``fedledger data heart`` and the demo run the same data the same way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.errors import ConfigError, DataError
from fedcore.splits import flamby_stratify, train_test_split_indices
from fedsets.data import (
    DATA_ENV,
    CsvSchema,
    SiteData,
    Table,
    carve_validation,
    default_data_root,
    prepare_site,
    read_table,
)

# FLamby's federated settings for Fed-Heart-Disease: 15 rounds of 100 local steps of batch 4.
ROUNDS = 15
LOCAL_STEPS = 100
BATCH_SIZE = 4
HEART_LABEL = "num"

FLAMBY_OPT = {"beta1": 0.9, "beta2": 0.999, "tau": 1e-8}

# Strategy -> (strategy keyword arguments, client training settings). FedAvg..FedAdagrad are
# FLamby's config_heart_disease.json; the robust rules reuse FedAvg's client settings.
FLAMBY_SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "fedavg": ({}, {"lr": 0.001}),
    "fedprox": ({"mu": 0.01}, {"lr": 0.001}),
    "fedadam": ({"server_lr": 0.01, **FLAMBY_OPT}, {"lr": 0.01}),
    "fedyogi": ({"server_lr": 0.01, **FLAMBY_OPT}, {"lr": 0.003162}),
    "fedadagrad": ({"server_lr": 0.316228, **FLAMBY_OPT}, {"lr": 0.003162}),
    "median": ({}, {"lr": 0.001}),
    "trimmed_mean": ({"trim_fraction": 0.25}, {"lr": 0.001}),
    "krum": ({"n_byzantine": 1}, {"lr": 0.001}),
    "multikrum": ({"n_byzantine": 1}, {"lr": 0.001}),
}

# The personalized federation ``make bench-fl`` reports as ``ditto_mlp`` (``heart_task_spec(model="mlp")``,
# ``fedledger demo --model mlp``): FedAvg on a one-hidden-layer MLP (16 units), each hospital keeping a Ditto
# personal model. Its training settings were fixed before any run (not tuned): lr 0.03, 100 local SGD steps,
# batch 8.
PERSONAL_MLP: dict[str, Any] = {"model": "mlp", "model_params": {"hidden_sizes": [16]}}
PERSONAL_MLP_TRAINING: dict[str, Any] = {"lr": 0.03, "local_steps": 100, "batch_size": 8}
PERSONAL_METHOD = "ditto"
# Whether each hospital also keeps its tuned local-only model as a candidate, chosen on its own validation (the
# benchmark's ``ditto_mlp_or_local``). Off: measured, the choice falls within validation noise and costs more than it
# saves (bench mean 0.797 vs ``ditto_mlp``'s 0.808; in the demo Hungarian kept 0.742 where Ditto gave 0.798).
PERSONAL_LOCAL_CANDIDATE = False
# The task models ``fedledger data heart`` and ``fedledger demo`` offer. ``data heart`` defaults to FLamby's logistic
# regression (HEART_MODEL, the reference task the strategy benchmark reports); the demo runs the benchmark's
# personalized choice (DEMO_MODEL, ``ditto_mlp``), which under rules v4 and v5 (the server step search and the rows'
# spread) pays neither a free rider nor an attacker (``python -m bench.fairness --model mlp``; README, "Incentives").
HEART_MODELS = ("logreg", "mlp")
# The server step search of each model's bounties (``resolve_rules(step_search=...)``; ``{}``: the settings of
# ``fedcore.rules.STEP_SEARCH``, fixed before any run). The MLP's updates (100 SGD steps at lr 0.03) overshoot, and
# without the search Shapley values pay a zero update for shortening their step; the logistic regression's small
# steps (lr 0.001) do not, and its rules stay as they were (README, "Incentives").
HEART_STEP_SEARCH: dict[str, dict[str, Any] | None] = {"logreg": None, "mlp": {}}
HEART_MODEL = "logreg"
DEMO_MODEL = "mlp"

HEART_DIR = "fed-heart-disease"
HEART_CENTERS = ("cleveland", "hungarian", "switzerland", "va")  # FLamby center ids 0..3
HEART_COLUMNS = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num",
)  # fmt: skip
HEART_SCHEMA = CsvSchema(
    label=HEART_LABEL,
    columns=HEART_COLUMNS,
    drop=("slope", "ca", "thal"),  # FLamby drops these columns: mostly missing outside Cleveland
    categorical={"cp": (1.0, 2.0, 3.0, 4.0), "restecg": (0.0, 1.0, 2.0)},
    drop_first=True,
    missing_tokens=("?",),
    missing="drop",
    label_threshold=0.0,  # num > 0 means disease
)
HEART_TRAIN_FRACTION = 0.66
HEART_SPLIT_SEED = 43


def heart_paths(data_root: str | os.PathLike | None = None, *, verify: bool = True) -> list[Path]:
    """Paths of the 4 center files, checked against ``SHA256SUMS`` when it is present."""
    directory = Path(data_root) if data_root is not None else default_data_root()
    if (directory / HEART_DIR).is_dir():
        directory = directory / HEART_DIR
    paths = [directory / f"processed.{center}.data" for center in HEART_CENTERS]
    for path in paths:
        if not path.is_file():
            raise DataError(f"Fed-Heart-Disease file not found: {path} (set {DATA_ENV} to the data folder)")
    sums = directory / "SHA256SUMS"
    if verify and sums.is_file():
        expected = {name: digest
                    for digest, name in (line.split() for line in sums.read_text().splitlines() if line.strip())}
        for path in paths:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if path.name in expected and expected[path.name] != digest:
                raise DataError(f"{path.name}: sha256 does not match SHA256SUMS (edited copy?)")
    return paths


def load_heart_tables(data_root: str | os.PathLike | None = None) -> list[Table]:
    """The 4 cleaned center tables (303/261/46/130 rows), raw feature values, 13 features."""
    return [read_table(path, HEART_SCHEMA, name=center) for path, center in zip(heart_paths(data_root), HEART_CENTERS)]


def load_fed_heart_disease(data_root: str | os.PathLike | None = None, *, normalize: bool = True) -> list[SiteData]:
    """The 4 Fed-Heart-Disease centers with FLamby's preprocessing and split.

    Per center: ``?`` -> missing, drop slope/ca/thal, drop rows with a missing value, one-hot cp
    and restecg (first level dropped), label ``num > 0``; then a 66% shuffled split with
    ``random_state=43``, stratified by label when both classes have more than 2 rows (all centers
    but Switzerland); features standardized with the center's own training mean and std.

    Returns
    -------
    list of SiteData
        Centers 0 cleveland, 1 hungarian, 2 switzerland, 3 va; train/test sizes 199/104, 172/89,
        30/16, 85/45.
    """
    sites = []
    for table in load_heart_tables(data_root):
        train_index, test_index = train_test_split_indices(
            len(table), train_fraction=HEART_TRAIN_FRACTION, seed=HEART_SPLIT_SEED, stratify=flamby_stratify(table.y)
        )
        sites.append(prepare_site(table, train_index, test_index, normalize=normalize))
    return sites


# ---------------------------------------------------------------------------------------------
# Three parts per center: site training rows, a carved validation slice, FLamby's test rows


@dataclass(frozen=True)
class HeartPart:
    """The rows of one center in each of the three parts (indices into the center's cleaned table)."""

    name: str
    table: Table  # raw (cleaned, one-hot) features and 0/1 labels
    train_index: np.ndarray
    validation_index: np.ndarray
    test_index: np.ndarray


def heart_parts(*, validation_fraction: float = 0.25, seed: int = 42, data_root: str | os.PathLike | None = None
                ) -> list[HeartPart]:
    """Split every Fed-Heart-Disease center into site-train, validation and test rows.

    Parameters
    ----------
    validation_fraction : float in (0, 1)
        Share of each center's FLamby *training* part carved out for the sponsor's validation set.
    seed : int
        Seed of the carving (stratified by label when both classes have more than 2 rows, as FLamby's split).
    data_root : path, optional
        Folder of the raw files (default: :func:`fedsets.data.default_data_root`).

    Returns
    -------
    list of HeartPart
        Centers cleveland, hungarian, switzerland, va. With the defaults the site/validation/test rows are
        149/50/104, 129/43/89, 22/8/16 and 63/22/45.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError(f"--validation-fraction must be in (0, 1), got {validation_fraction!r}")
    parts = []
    for site in load_fed_heart_disease(data_root, normalize=False):
        carved = carve_validation(site, fraction=validation_fraction, seed=seed, normalize=False)
        parts.append(HeartPart(site.name, site.table, carved.train_index, carved.test_index, site.test_index))
    return parts


#: The sponsor's validation set names each row's hospital in this column (text, not a feature).
HEART_GROUP_COLUMN = "site"
#: The utility's weighting of the hospitals' validation rows in ``fedledger data heart`` and the demo, chosen by
#: ``python -m bench.weighting`` on validation data only (``bench/results/weighting.json``, bench/README.md).
HEART_WEIGHTING = "pooled"


def heart_task_spec(feature_columns: tuple[str, ...], *, model: str = HEART_MODEL, scaling=None, population=None):
    """The Fed-Heart-Disease task.

    Parameters
    ----------
    model : {"logreg", "mlp"}
        ``"logreg"`` (``HEART_MODEL``): FLamby's logistic regression with FedAvg's client settings (``LOCAL_STEPS``
        local SGD steps of ``BATCH_SIZE`` at lr 1e-3 per round), no personalization. ``"mlp"``: the benchmark's
        ``ditto_mlp_or_local`` (``PERSONAL_MLP`` trained with ``PERSONAL_MLP_TRAINING``, each hospital
        personalizing with ``PERSONAL_METHOD`` and its tuned local-only model as one more candidate).
    scaling : FeatureScaling, optional
        The sponsor's scaler (default: none).
    population : TargetPopulation, optional
        The utility's weighting of validation groups (default: pooled).
    """
    from fedcore.task import FeatureScaling, PersonalizationSettings, TargetPopulation, TaskSpec, TrainingSettings

    if model == "mlp":
        family, params = PERSONAL_MLP["model"], PERSONAL_MLP["model_params"]
        training = TrainingSettings(optimizer="sgd", **PERSONAL_MLP_TRAINING)
        personalization = PersonalizationSettings(method=PERSONAL_METHOD, local_candidate=PERSONAL_LOCAL_CANDIDATE)
    elif model == "logreg":
        family, params = "logreg", {}
        training = TrainingSettings(local_steps=LOCAL_STEPS, batch_size=BATCH_SIZE,
                                    lr=FLAMBY_SETTINGS["fedavg"][1]["lr"], optimizer="sgd")
        personalization = PersonalizationSettings()
    else:
        raise ConfigError(f"--model must be one of {', '.join(HEART_MODELS)}, got {model!r}")
    return TaskSpec(
        name="fed-heart-disease",
        model=family,
        model_params=params,
        feature_columns=tuple(feature_columns),
        label_column=HEART_LABEL,
        metric="accuracy",
        training=training,
        personalization=personalization,
        scaling=scaling if scaling is not None else FeatureScaling(),
        population=population if population is not None else TargetPopulation(),
    )
