"""The task specification a sponsor publishes and every party trains against.

A :class:`TaskSpec` names the model and its hyperparameters, the data columns, the metric and the
local-training settings. Its identity is :func:`task_hash`: the sha256 of its canonical JSON (sorted
keys, no whitespace), so the same task gives the same 32 bytes on every machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from fedcore import jsondoc
from fedcore.errors import ConfigError

METRICS = ("accuracy", "auc", "neg_loss")
OPTIMIZERS = ("sgd", "adam")
PERSONALIZATION_METHODS = ("none", "finetune", "ditto")
NORM_RULES = ("refuse", "clip")
WEIGHTINGS = ("pooled", "equal", "explicit")


@dataclass(frozen=True)
class TrainingSettings:
    """How an institution trains locally each round.

    Exactly one of ``local_steps`` (mini-batch updates per round) and ``local_epochs`` (passes over
    the local data per round) is set.

    Attributes
    ----------
    local_steps : int or None
        Mini-batch updates per round.
    local_epochs : int or None
        Full passes over the local training data per round.
    batch_size : int
        Mini-batch size; the last batch of an epoch may be smaller.
    lr : float
        Client learning rate.
    optimizer : str
        ``"sgd"`` or ``"adam"``; a fresh optimizer is built every round.
    momentum : float
        SGD momentum (ignored by Adam).
    weight_decay : float
        L2 penalty handed to the optimizer.
    fedprox_mu : float
        Weight of FedProx's proximal term ``mu/2 * ||w - w_global||^2``; 0 disables it.
    seed : int
        Root of the initial model and of every random choice of local training (see :mod:`fedcore.seeds`).
    """

    local_steps: int | None = 100
    local_epochs: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    fedprox_mu: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.local_steps is None) == (self.local_epochs is None):
            raise ConfigError("training: set exactly one of local_steps and local_epochs")
        for name in ("local_steps", "local_epochs"):
            value = getattr(self, name)
            if value is not None and (not jsondoc.is_int(value) or value < 1):
                raise ConfigError(f"training.{name} must be a positive integer, got {value!r}")
        if not jsondoc.is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError(f"training.batch_size must be a positive integer, got {self.batch_size!r}")
        if not jsondoc.is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"training.seed must be a non-negative integer, got {self.seed!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"training.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("lr", "momentum", "weight_decay", "fedprox_mu"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or not math.isfinite(value):
                raise ConfigError(f"training.{name} must be a finite number >= 0, got {value!r}")
            # 1 and 1.0 must hash the same: store floats as floats.
            object.__setattr__(self, name, float(value))
        if self.lr == 0:
            raise ConfigError("training.lr must be > 0")


@dataclass(frozen=True)
class PersonalizationSettings:
    """How each institution derives its own model at the end of a bounty, on its own machine.

    Nothing here changes what leaves an institution: updates stay deltas of the shared (global)
    model, and contribution scoring scores them as before. The candidates are chosen by each
    institution on a validation slice carved from its own training rows (``node.personalize``).

    Attributes
    ----------
    method : str
        ``"none"``; ``"finetune"`` (the final global model trained further on the local rows);
        ``"ditto"`` (Li et al. 2021: a personal model that follows every round's global model
        through the proximal term ``lambda/2 * ||v - w_global_r||^2`` while training on local rows).
    ditto_lambdas : tuple of float
        Candidate ``lambda`` values (Ditto); small is close to local-only, large to the global model.
    finetune_steps : tuple of int
        Candidate fine-tuning step counts; 0 keeps the global model.
    finetune_lrs : tuple of float
        Candidate fine-tuning learning rates (the task's optimizer and batch size).
    validation_fraction : float
        Share of the local training rows carved off to choose among the candidates.
    validation_splits : int
        Number of different carvings averaged (Switzerland has 30 training rows: one carving is noise).
    local_candidate : bool
        The institution's tuned local-only model (``node.personalize.best_local_only``) is one more
        candidate, scored on the same carvings with its own tuning redone inside each (nested, so its
        score is not inflated by the choice among its many settings); ties go to it. A hospital the
        federation does not help then keeps what it could do alone.
    """

    method: str = "none"
    ditto_lambdas: tuple[float, ...] = (0.003, 0.03, 0.3, 3.0)
    finetune_steps: tuple[int, ...] = (0, 25, 100, 400)
    finetune_lrs: tuple[float, ...] = (0.003, 0.01, 0.03)
    validation_fraction: float = 0.25
    validation_splits: int = 5
    local_candidate: bool = False

    def __post_init__(self) -> None:
        if self.method not in PERSONALIZATION_METHODS:
            raise ConfigError(f"personalization.method must be one of {PERSONALIZATION_METHODS}, got {self.method!r}")
        checks = (("ditto_lambdas", _is_number), ("finetune_lrs", _is_number), ("finetune_steps", jsondoc.is_int))
        for name, check in checks:
            values = getattr(self, name)
            if isinstance(values, str) or not isinstance(values, list | tuple) or not values:
                raise ConfigError(f"personalization.{name} must be a non-empty list")
            if not all(check(v) and math.isfinite(v) and v >= 0 for v in values):
                raise ConfigError(f"personalization.{name} must hold finite numbers >= 0, got {list(values)!r}")
            object.__setattr__(self, name, tuple(float(v) if check is _is_number else int(v) for v in values))
        if 0.0 in self.finetune_lrs:
            raise ConfigError("personalization.finetune_lrs must be > 0")
        if not _is_number(self.validation_fraction) or not 0 < self.validation_fraction < 1:
            raise ConfigError(
                f"personalization.validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        object.__setattr__(self, "validation_fraction", float(self.validation_fraction))
        if not jsondoc.is_int(self.validation_splits) or self.validation_splits < 1:
            raise ConfigError(
                f"personalization.validation_splits must be a positive integer, got {self.validation_splits!r}"
            )
        if not isinstance(self.local_candidate, bool):
            raise ConfigError(f"personalization.local_candidate must be true or false, got {self.local_candidate!r}")

    def to_dict(self) -> dict[str, Any]:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not self.local_candidate:  # implied: specs written before the field existed keep their hash
            del data["local_candidate"]
        return data


@dataclass(frozen=True)
class DeclaredBounds:
    """What an institution may declare for its update, fixed by the task (and so by its hash on chain).

    Every round applies them before aggregating (:func:`aggregator.rounds.bound_updates`, in the one round
    computation the auditor replays): an update outside them is excluded with the reason recorded, or clipped.

    Attributes
    ----------
    min_samples, max_samples : int
        The range a declared sample count (FedAvg's weight) must fall in; outside it the update is excluded.
        Within it a count is still self-declared: ``max_samples`` bounds how far one institution can pull the average.
    max_update_norm : float
        The largest L2 norm (over all tensors, in float64) of an update ``w_local - w_global``.
    norm_rule : str
        Above ``max_update_norm``: ``"refuse"`` excludes the update, ``"clip"`` scales it down to that norm.
    """

    min_samples: int = 1
    max_samples: int = 1_000_000
    max_update_norm: float = 1e4
    norm_rule: str = "refuse"

    def __post_init__(self) -> None:
        for name in ("min_samples", "max_samples"):
            value = getattr(self, name)
            if not jsondoc.is_int(value) or not 1 <= value < 2**63:
                raise ConfigError(f"bounds.{name} must be an integer in [1, 2^63), got {value!r}")
        if self.min_samples > self.max_samples:
            raise ConfigError(f"bounds.min_samples {self.min_samples} is above bounds.max_samples {self.max_samples}")
        value = self.max_update_norm
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"bounds.max_update_norm must be a finite number > 0, got {value!r}")
        object.__setattr__(self, "max_update_norm", float(value))
        if self.norm_rule not in NORM_RULES:
            raise ConfigError(f"bounds.norm_rule must be one of {NORM_RULES}, got {self.norm_rule!r}")


@dataclass(frozen=True)
class FeatureScaling:
    """The standardization every role applies to the task's features, published by the sponsor in the task.

    ``transform(X) = (X - mean) / std``. The node scales its own rows with it, the aggregator and the auditor the
    validation set, the demo every test part: the model is trained and scored on one scale, and no party needs
    another's private statistics. Empty ``mean`` and ``std`` (the default) is the identity: features are used as
    they are in the files.

    Attributes
    ----------
    mean : tuple of float, length d or 0
        Per-feature centre, in the order of ``feature_columns``.
    std : tuple of float, length d or 0
        Per-feature scale, each finite and > 0.
    source : str
        How the sponsor obtained them (e.g. ``"sponsor validation rows"``), for readers; part of the hash.
    """

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if isinstance(values, str) or not isinstance(values, list | tuple):
                raise ConfigError(f"scaling.{name} must be a list of numbers")
            if not all(_is_number(v) and math.isfinite(v) for v in values):
                raise ConfigError(f"scaling.{name} must hold finite numbers")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if len(self.mean) != len(self.std):
            raise ConfigError(f"scaling.mean has {len(self.mean)} values but scaling.std has {len(self.std)}")
        if any(v <= 0 for v in self.std):
            raise ConfigError("scaling.std must hold numbers > 0")
        if not isinstance(self.source, str):
            raise ConfigError("scaling.source must be a string")

    @property
    def identity(self) -> bool:
        return not self.mean

    def transform(self, X: Any) -> Any:
        """``(X - mean) / std`` in float64, returned as float32 (the identity when no scaler is declared).

        Parameters
        ----------
        X : np.ndarray, shape (n, d)
        """
        import numpy as np

        X = np.asarray(X, dtype=np.float64)
        if self.identity:
            return X.astype(np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ConfigError(f"the task's scaler has {len(self.mean)} features, the rows have shape {X.shape}")
        return ((X - np.asarray(self.mean)[None, :]) / np.asarray(self.std)[None, :]).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "source": self.source}


@dataclass(frozen=True)
class TargetPopulation:
    """Whom the sponsor's validation set stands for: how the utility that scores contributions weights its rows.

    The validation CSV may carry a group column (a site, a region, any stratum; text, not a feature). The utility
    is ``sum_g w_g * metric(rows of group g)`` with the weights below summing to 1 (:mod:`fedcore.population`).

    Attributes
    ----------
    weighting : str
        ``"pooled"``: every validation row counts the same (the metric over all rows, groups ignored);
        ``"equal"``: every group present in the validation set counts the same (FLamby's "mean over centers");
        ``"explicit"``: the sponsor's ``group_weights``.
    group_column : str or None
        The validation set's group column; required unless ``weighting`` is ``"pooled"``.
    group_weights : Mapping[str, float]
        ``"explicit"`` only: group value -> weight (finite, >= 0, not all 0; normalized to sum to 1). Every group of
        the validation set must have a weight, and every weighted group validation rows.
    """

    weighting: str = "pooled"
    group_column: str | None = None
    group_weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"population.weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.group_column is not None and (not isinstance(self.group_column, str) or not self.group_column):
            raise ConfigError("population.group_column must be a non-empty string or null")
        if self.weighting != "pooled" and self.group_column is None:
            raise ConfigError(f"population.weighting {self.weighting!r} needs population.group_column")
        weights = self.group_weights
        if not isinstance(weights, Mapping):
            raise ConfigError("population.group_weights must be an object")
        if (self.weighting == "explicit") != bool(weights):
            raise ConfigError("population.group_weights is given exactly when population.weighting is 'explicit'")
        if not all(isinstance(k, str) and k for k in weights):
            raise ConfigError("population.group_weights keys must be non-empty strings")
        if not all(_is_number(v) and math.isfinite(v) and v >= 0 for v in weights.values()):
            raise ConfigError("population.group_weights must hold finite numbers >= 0")
        if weights and not any(v > 0 for v in weights.values()):
            raise ConfigError("population.group_weights must not all be 0")
        object.__setattr__(self, "group_weights", _FrozenDict({k: float(v) for k, v in sorted(weights.items())}))

    def to_dict(self) -> dict[str, Any]:
        return {"weighting": self.weighting, "group_column": self.group_column,
                "group_weights": dict(self.group_weights)}


@dataclass(frozen=True)
class PrivacySettings:
    """Differential privacy of local training: DP-SGD at the sample level (Opacus), as FLamby's DP example.

    Every institution gets the same target (epsilon, delta) for the whole bounty. Each computes its own
    noise multiplier with Opacus's RDP accountant for ``rounds`` rounds of its local steps at its sample
    rate ``batch_size / rows`` (Poisson sampling), so that after ``rounds`` rounds it has spent at most
    ``epsilon``; it refuses to train a round that would spend more (:mod:`node.privacy`).

    Attributes
    ----------
    epsilon : float or None
        The target epsilon per institution for the whole bounty; ``None`` trains without DP.
    delta : float
        The target delta, in (0, 1).
    max_grad_norm : float
        Per-sample gradient clipping norm (L2 over all parameters).
    rounds : int
        The number of rounds the budget covers (the bounty's rounds).
    """

    epsilon: float | None = None
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.epsilon is not None:
            if not _is_number(self.epsilon) or not math.isfinite(self.epsilon) or self.epsilon <= 0:
                raise ConfigError(f"privacy.epsilon must be a finite number > 0 or null, got {self.epsilon!r}")
            object.__setattr__(self, "epsilon", float(self.epsilon))
        if not _is_number(self.delta) or not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta!r}")
        if not _is_number(self.max_grad_norm) or not math.isfinite(self.max_grad_norm) or self.max_grad_norm <= 0:
            raise ConfigError(f"privacy.max_grad_norm must be a finite number > 0, got {self.max_grad_norm!r}")
        if not jsondoc.is_int(self.rounds) or self.rounds < 1:
            raise ConfigError(f"privacy.rounds must be a positive integer, got {self.rounds!r}")
        object.__setattr__(self, "delta", float(self.delta))
        object.__setattr__(self, "max_grad_norm", float(self.max_grad_norm))

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None


@dataclass(frozen=True)
class TaskSpec(jsondoc.HashedDocument):
    """What to train, on which columns, judged by which metric.

    Attributes
    ----------
    name : str
        Human-readable task name.
    model : str
        A name in :data:`fedcore.models.MODEL_BUILDERS` (``"logreg"``, ``"mlp"``).
    model_params : Mapping[str, Any]
        The builder's keyword arguments, e.g. ``{"hidden_sizes": [32]}``.
    feature_columns : tuple of str
        Model inputs, in order; ``n_features == len(feature_columns)``.
    label_column : str
        The binary target.
    metric : str
        ``"accuracy"``, ``"auc"`` or ``"neg_loss"`` (higher is better for all three).
    training : TrainingSettings
    personalization : PersonalizationSettings
        How institutions derive their own models at the end; left out of the canonical JSON when it
        is the default (``method="none"``), so specs written before it existed keep their hash.
    bounds : DeclaredBounds
        The sample-count range and the update-norm rule every round enforces.
    scaling : FeatureScaling
        The standardization every role applies to the features (default: none, features used as they are).
    population : TargetPopulation
        How the validation set's rows are weighted in the utility that scores contributions (default: pooled).
    privacy : PrivacySettings
        Differential privacy of local training; left out of the canonical JSON when off (the default).

    ``scaling``, ``population`` and ``privacy`` are left out of the canonical JSON at their defaults, like
    ``personalization``.
    """

    name: str
    model: str
    feature_columns: tuple[str, ...]
    label_column: str
    metric: str = "accuracy"
    model_params: Mapping[str, Any] = field(default_factory=dict)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    personalization: PersonalizationSettings = field(default_factory=PersonalizationSettings)
    bounds: DeclaredBounds = field(default_factory=DeclaredBounds)
    scaling: FeatureScaling = field(default_factory=FeatureScaling)
    population: TargetPopulation = field(default_factory=TargetPopulation)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)

    DOCUMENT: ClassVar[str] = "task spec"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("task.name must be a non-empty string")
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("task.model must be a non-empty string")
        columns = self.feature_columns
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ConfigError("task.feature_columns must be a list of strings")
        columns = tuple(columns)
        if not columns:
            raise ConfigError("task.feature_columns must not be empty")
        if len(set(columns)) != len(columns):
            raise ConfigError("task.feature_columns has duplicates")
        if not isinstance(self.label_column, str) or not self.label_column:
            raise ConfigError("task.label_column must be a non-empty string")
        if self.label_column in columns:
            raise ConfigError(f"task.label_column {self.label_column!r} is also a feature column")
        if self.metric not in METRICS:
            raise ConfigError(f"task.metric must be one of {METRICS}, got {self.metric!r}")
        if not isinstance(self.model_params, Mapping):
            raise ConfigError("task.model_params must be an object")
        if not isinstance(self.training, TrainingSettings):
            raise ConfigError("task.training must be a TrainingSettings")
        if not isinstance(self.personalization, PersonalizationSettings):
            raise ConfigError("task.personalization must be a PersonalizationSettings")
        if not isinstance(self.bounds, DeclaredBounds):
            raise ConfigError("task.bounds must be a DeclaredBounds")
        if not isinstance(self.scaling, FeatureScaling):
            raise ConfigError("task.scaling must be a FeatureScaling")
        if not self.scaling.identity and len(self.scaling.mean) != len(columns):
            raise ConfigError(f"task.scaling has {len(self.scaling.mean)} features, task.feature_columns "
                              f"{len(columns)}")
        if not isinstance(self.population, TargetPopulation):
            raise ConfigError("task.population must be a TargetPopulation")
        group = self.population.group_column
        if group is not None and (group in columns or group == self.label_column):
            raise ConfigError(f"task.population.group_column {group!r} is a feature or the label")
        if not isinstance(self.privacy, PrivacySettings):
            raise ConfigError("task.privacy must be a PrivacySettings")
        # Freeze containers so the spec (and its hash) cannot change after creation.
        object.__setattr__(self, "feature_columns", columns)
        object.__setattr__(self, "model_params", _freeze(dict(self.model_params)))
        try:
            canonical_json(self)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"task.model_params is not plain JSON: {error}") from None

    def __hash__(self) -> int:
        return int.from_bytes(task_hash(self)[:8], "big")

    @property
    def n_features(self) -> int:
        return len(self.feature_columns)

    def with_training(self, **changes: Any) -> TaskSpec:
        """A copy with some training settings changed (e.g. ``lr=0.01``)."""
        return replace(self, training=replace(self.training, **changes))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists, not tuples)."""
        data = asdict(self)
        data["feature_columns"] = list(self.feature_columns)
        data["model_params"] = jsondoc.thaw(self.model_params)
        data["personalization"] = self.personalization.to_dict()
        data["scaling"] = self.scaling.to_dict()
        data["population"] = self.population.to_dict()
        # defaults are implied: specs written before these fields existed keep their hash
        for name, default in (("personalization", PersonalizationSettings()), ("scaling", FeatureScaling()),
                              ("population", TargetPopulation()),
                              ("privacy", PrivacySettings())):
            if getattr(self, name) == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Build from a parsed JSON object; missing or unknown fields raise ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError("task spec must be a JSON object")
        jsondoc.check_keys("task", data, cls)
        training_data = data.get("training", {})
        if not isinstance(training_data, Mapping):
            raise ConfigError("task.training must be an object")
        jsondoc.check_keys("training", training_data, TrainingSettings)
        kinds: dict[str, type] = {"personalization": PersonalizationSettings, "bounds": DeclaredBounds,
                                  "scaling": FeatureScaling, "population": TargetPopulation,
                                  "privacy": PrivacySettings}
        parts: dict[str, Any] = {}
        for name, kind in kinds.items():
            value = data.get(name)
            parts[name] = {} if value is None else value  # absent or null (the wire's TaskInfo): the default
            if not isinstance(parts[name], Mapping):
                raise ConfigError(f"task.{name} must be an object")
            jsondoc.check_keys(name, parts[name], kind)
        try:
            training = TrainingSettings(**training_data)
            nested: dict[str, Any] = {name: kind(**parts[name]) for name, kind in kinds.items()}
            values = {k: v for k, v in data.items() if k != "training" and k not in nested}
            return cls(**values, training=training, **nested)
        except TypeError as error:  # wrong argument types caught by the dataclass
            raise ConfigError(f"malformed task spec: {error}") from None



def canonical_json(spec: TaskSpec) -> str:
    """Sorted keys, no whitespace, no NaN: equal specs give equal strings."""
    return spec.to_json()


def task_hash(spec: TaskSpec) -> bytes:
    """sha256 of the canonical JSON, 32 bytes (the task id that goes on chain)."""
    return spec.digest()


def task_hash_hex(spec: TaskSpec) -> str:
    """:func:`task_hash` as ``0x``-prefixed lowercase hex."""
    return "0x" + task_hash(spec).hex()


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


class _FrozenDict(dict):
    """A dict that refuses mutation (keeps TaskSpec immutable and JSON-serializable)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("task spec parameters are immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        # pickle rebuilds a dict subclass item by item through __setitem__; build it whole instead (a spec crosses
        # process boundaries in benchmarks' workers)
        return (_FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(jsondoc.thaw(self), sort_keys=True))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
