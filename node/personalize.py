"""An institution's own model at the end of a bounty, and the local-only model it is measured against.

Everything here runs on the institution's machine, on its own rows, after (or alongside) the
federated rounds; nothing it computes is sent anywhere. The shared model the federation trains,
and every update an institution sends, are exactly what they are without personalization, so
contribution scoring still scores the shared model's updates.

Two personalizations, declared by ``TaskSpec.personalization`` (so they are part of the task hash):

* ``finetune``: the final global model trained further on the local rows.
* ``ditto`` (Li et al., ICML 2021): a personal model ``v`` that keeps its own parameters through
  training. In round ``r`` it takes the round's local steps on ``loss(v) + lambda/2 ||v - w_r||^2``,
  with ``w_r`` the global model of that round. Because ``v`` never feeds back into ``w``, it is a
  function of the global models received and the local rows: :func:`ditto_personal` replays it.

The candidates (``lambda``, fine-tuning steps and learning rates) are chosen by each institution on
validation slices carved from its own training rows (:func:`choose_on_validation`); so is the
local-only baseline (:data:`LOCAL_ONLY_CANDIDATES`: logistic regressions and small MLPs with
Adam, epochs and weight decay on a grid), so "alone" gets the same care as "personalized".

With ``local_candidate`` set, the tuned local-only model is one more candidate (first, so a tie
keeps it): a hospital the federation does not help ends with what it could do alone. Its
validation score is nested (its settings are chosen again inside each carving's training rows),
otherwise the best of its 39 settings would carry the luck of that choice into the comparison.

The validation slices are carved from rows that also shaped the global models (they took part in
the federation), so the choice among personalized candidates leans slightly toward the global
model; the local-only choice does not have this lean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from fedcore import metrics as fm
from fedcore.errors import ConfigError
from fedcore.models import build_model, get_weights, predict_with_weights
from fedcore.seeds import personalization_seed
from fedcore.splits import flamby_stratify, train_test_split_indices
from fedcore.task import TaskSpec, TrainingSettings
from node.training import apply_update, train_local

Weights = dict[str, np.ndarray]
# Train on (X, y) and return a predictor of positive-class probabilities.
Fitter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


@dataclass(frozen=True)
class LocalModelChoice:
    """One candidate of the local-only baseline: a model family and how to train it."""

    model: str
    model_params: Mapping[str, object]
    training: TrainingSettings

    def describe(self) -> dict[str, object]:
        t = self.training
        return {"model": self.model, "model_params": dict(self.model_params), "optimizer": t.optimizer, "lr": t.lr,
                "local_epochs": t.local_epochs, "batch_size": t.batch_size, "weight_decay": t.weight_decay}


def _local_candidates() -> tuple[LocalModelChoice, ...]:
    # Fixed before any result was seen: Adam, the epochs and L2 penalties a careful user would try.
    logreg = [
        LocalModelChoice("logreg", {}, TrainingSettings(local_steps=None, local_epochs=epochs, batch_size=4, lr=lr,
                                                        optimizer="adam", weight_decay=decay))
        for lr in (0.003, 0.01, 0.03) for epochs in (5, 20, 80) for decay in (0.0, 0.01, 0.1)
    ]
    mlp = [
        LocalModelChoice("mlp", {"hidden_sizes": [16]}, TrainingSettings(local_steps=None, local_epochs=epochs,
                                                                          batch_size=8, lr=lr, optimizer="adam",
                                                                          weight_decay=decay))
        for lr in (0.003, 0.01) for epochs in (10, 40) for decay in (0.0, 0.01, 0.1)
    ]
    return tuple(logreg + mlp)


LOCAL_ONLY_CANDIDATES: tuple[LocalModelChoice, ...] = _local_candidates()


@dataclass(frozen=True)
class Choice:
    """The candidate chosen on validation.

    Attributes
    ----------
    index : int
        Position of the chosen candidate.
    label : str
        Its description, e.g. ``"ditto lambda=0.3"``.
    validation_accuracy : tuple of float
        Mean validation accuracy of every candidate, in candidate order.
    """

    index: int
    label: str
    validation_accuracy: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PersonalModel:
    """A model an institution keeps: the task's model family unless said otherwise.

    Attributes
    ----------
    model, model_params : the architecture (a :data:`fedcore.models.MODEL_BUILDERS` name and its parameters)
    weights : dict[str, np.ndarray]
    choice : Choice
    """

    model: str
    model_params: Mapping[str, object]
    weights: Weights
    choice: Choice

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Positive-class probabilities, shape ``(n,)``, of ``X`` of shape ``(n, d)``."""
        return predict_with_weights(architecture(self.model, self.model_params, np.shape(X)[1]), self.weights, X)


def architecture(model: str, model_params: Mapping[str, object], n_features: int) -> TaskSpec:
    """A stand-in task spec that only names a model family, its parameters and its input width."""
    return TaskSpec(name="architecture", model=model, model_params=model_params,
                    feature_columns=tuple(f"x{i}" for i in range(n_features)), label_column="y")


# ---------------------------------------------------------------------------------------------
# The maths (pure functions of weights and rows)


def fine_tune(global_weights: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray, spec: TaskSpec, *,
              steps: int, lr: float, seed: int) -> Weights:
    """The global model after ``steps`` mini-batch steps on ``(X, y)`` (task optimizer and batch size)."""
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in global_weights.items()}
    if steps == 0:
        return weights
    result = train_local(weights, X, y, spec, seed=seed, config={"local_steps": steps, "lr": lr, "fedprox_mu": 0.0})
    return apply_update(weights, result.arrays)


def ditto_personal(global_trajectory: Sequence[Mapping[str, np.ndarray]], X: np.ndarray, y: np.ndarray,
                   spec: TaskSpec, *, lam: float, seed: int) -> Weights:
    """Ditto's personal model after the rounds whose global models are ``global_trajectory``.

    Parameters
    ----------
    global_trajectory : sequence of weights
        ``w_1 .. w_R``: the global model each round started from (``w_1`` is the initial model,
        where the personal model starts too).
    X : np.ndarray, shape (n, d)
    y : np.ndarray, shape (n,)
    spec : TaskSpec
        The round's local training settings (steps, learning rate, batch size, optimizer).
    lam : float
        Weight of ``lam/2 ||v - w_r||^2``.
    seed : int
        Root of the shuffling; round ``r`` uses ``personalization_seed(seed, "ditto", r)``.

    Returns
    -------
    dict[str, np.ndarray]
        The personal weights ``v_R``.
    """
    if not global_trajectory:
        raise ConfigError("ditto needs the global model of at least one round")
    personal = {k: np.asarray(v, dtype=np.float32) for k, v in global_trajectory[0].items()}
    for r, global_weights in enumerate(global_trajectory, start=1):
        result = train_local(personal, X, y, spec, seed=personalization_seed(seed, "ditto", r),
                             config={"fedprox_mu": float(lam)}, anchor_weights=global_weights)
        personal = apply_update(personal, result.arrays)
    return personal


def train_alone(choice: LocalModelChoice, X: np.ndarray, y: np.ndarray, *, seed: int) -> Weights:
    """A model of ``choice``'s family trained on ``(X, y)`` only, from a seeded initialization."""
    spec = replace(architecture(choice.model, choice.model_params, np.shape(X)[1]), training=choice.training)
    start = get_weights(build_model(spec, seed=personalization_seed(seed, "local-only-init")))
    result = train_local(start, X, y, spec, seed=personalization_seed(seed, "local-only"))
    return apply_update(start, result.arrays)


def majority_class(y: np.ndarray) -> float:
    """The training majority class (1.0 on a tie), the floor any model should beat."""
    return float(np.mean(np.asarray(y) >= 0.5) >= 0.5)


def validation_splits(y: np.ndarray, *, fraction: float, splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` carvings ``(train_rows, validation_rows)`` of the training rows, stratified like FLamby's split."""
    y = np.asarray(y)
    return [
        train_test_split_indices(y.shape[0], train_fraction=1.0 - fraction,
                                 seed=personalization_seed(seed, "carve", k) % 2**32, stratify=flamby_stratify(y))
        for k in range(splits)
    ]


def choose_on_validation(fitters: Sequence[Fitter], X: np.ndarray, y: np.ndarray, *,
                         carvings: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[int, tuple[float, ...]]:
    """Index of the candidate with the best mean validation accuracy (first one on a tie), and every mean.

    Parameters
    ----------
    fitters : sequence of callables ``(X_train, y_train) -> predict``
    X : np.ndarray, shape (n, d)
    y : np.ndarray, shape (n,)
    carvings : sequence of ``(train_rows, validation_rows)``
    """
    scores = []
    for fit in fitters:
        accuracies = [fm.accuracy(y[val], fit(X[tr], y[tr])(X[val])) for tr, val in carvings]
        scores.append(float(np.mean(accuracies)))
    return int(np.argmax(scores)), tuple(round(s, 6) for s in scores)


# ---------------------------------------------------------------------------------------------
# What a node runs at the end of a bounty


def best_local_only(X: np.ndarray, y: np.ndarray, spec: TaskSpec, *, seed: int,
                    candidates: Sequence[LocalModelChoice] = LOCAL_ONLY_CANDIDATES) -> PersonalModel:
    """The tuned local-only baseline: every candidate family and setting, chosen on validation carvings."""
    settings = spec.personalization
    carvings = validation_splits(y, fraction=settings.validation_fraction, splits=settings.validation_splits, seed=seed)

    def fitter(choice: LocalModelChoice) -> Fitter:
        def fit(X_fit: np.ndarray, y_fit: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            weights = train_alone(choice, X_fit, y_fit, seed=seed)
            return lambda X_eval: predict_with_weights(
                architecture(choice.model, choice.model_params, np.shape(X_eval)[1]), weights, X_eval)
        return fit

    index, scores = choose_on_validation([fitter(c) for c in candidates], X, y, carvings=carvings)
    chosen = candidates[index]
    label = f"local-only {chosen.model} " + " ".join(f"{k}={v}" for k, v in chosen.describe().items() if k != "model")
    return PersonalModel(chosen.model, chosen.model_params, train_alone(chosen, X, y, seed=seed),
                         Choice(index, label, scores))


def _fine_tuned(start: Weights, spec: TaskSpec, steps: int, lr: float, seed: int, X: np.ndarray, y: np.ndarray
                ) -> Weights:
    return fine_tune(start, X, y, spec, steps=steps, lr=lr, seed=seed)


def _ditto(trajectory: Sequence[Mapping[str, np.ndarray]], spec: TaskSpec, lam: float, seed: int,
           X: np.ndarray, y: np.ndarray) -> Weights:
    return ditto_personal(trajectory, X, y, spec, lam=lam, seed=seed)


def personalize(global_trajectory: Sequence[Mapping[str, np.ndarray]], final_global: Mapping[str, np.ndarray],
                X: np.ndarray, y: np.ndarray, spec: TaskSpec, *, seed: int,
                local_only: PersonalModel | None = None) -> PersonalModel:
    """The institution's own model under ``spec.personalization`` (the final global model for ``"none"``).

    Parameters
    ----------
    global_trajectory : sequence of weights
        The global model each round started from, in round order (Ditto replays them).
    final_global : weights
        The global model after the last round (fine-tuning starts from it).
    X, y : the institution's training rows, shapes ``(n, d)`` and ``(n,)``
    spec : TaskSpec
    seed : int
        Root of the carvings and of the training shuffles.
    local_only : PersonalModel, optional
        ``best_local_only(X, y, spec, seed=seed)`` if the caller has it already (returned as is when
        ``spec.personalization.local_candidate`` and it wins).
    """
    settings = spec.personalization
    final_global = {k: np.asarray(v, dtype=np.float32) for k, v in final_global.items()}
    model, params = spec.model, dict(spec.model_params)
    if settings.method == "none":
        return PersonalModel(model, params, final_global, Choice(0, "global model"))
    carvings = validation_splits(y, fraction=settings.validation_fraction, splits=settings.validation_splits, seed=seed)
    if settings.method == "finetune":
        options = [(s, lr) for s in settings.finetune_steps
                   for lr in (settings.finetune_lrs if s else settings.finetune_lrs[:1])]
        labels = [f"finetune steps={s} lr={lr:g}" for s, lr in options]
        train = [partial(_fine_tuned, final_global, spec, s, lr, personalization_seed(seed, "finetune"))
                 for s, lr in options]
    else:
        labels = [f"ditto lambda={lam:g}" for lam in settings.ditto_lambdas]
        train = [partial(_ditto, global_trajectory, spec, lam, seed) for lam in settings.ditto_lambdas]

    def fitter(fit_weights: Callable[[np.ndarray, np.ndarray], Weights]) -> Fitter:
        def fit(X_fit: np.ndarray, y_fit: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            weights = fit_weights(X_fit, y_fit)
            return lambda X_eval: predict_with_weights(spec, weights, X_eval)
        return fit

    fitters = [fitter(t) for t in train]
    if settings.local_candidate:
        # First, so that a tie keeps what the institution could do alone; its tuning is redone inside each carving.
        fitters.insert(0, lambda X_fit, y_fit: best_local_only(X_fit, y_fit, spec, seed=seed).predict)
    index, scores = choose_on_validation(fitters, X, y, carvings=carvings)
    if settings.local_candidate and index == 0:
        alone = local_only if local_only is not None else best_local_only(X, y, spec, seed=seed)
        return replace(alone, choice=Choice(0, alone.choice.label, scores))
    k = index - int(settings.local_candidate)
    return PersonalModel(model, params, train[k](X, y), Choice(index, labels[k], scores))


# Share of its training rows an institution holds out to measure its own gain (personalized vs local-only).
HELD_OUT_FRACTION = 0.25


def held_out_gain(global_trajectory: Sequence[Mapping[str, np.ndarray]], final_global: Mapping[str, np.ndarray],
                  X: np.ndarray, y: np.ndarray, spec: TaskSpec, *, seed: int
                  ) -> tuple[PersonalModel, dict[str, object]]:
    """The institution's personalized model and its gain over a local-only model, both on its own held-out part.

    A stratified ``HELD_OUT_FRACTION`` of the rows is held out; the personalized model
    (:func:`personalize`) and the tuned local-only model (:func:`best_local_only`) are both built on
    the rest, and scored on it. The held-out rows took part in the federation's training, so the
    comparison leans slightly toward the personalized model (its global models saw them).

    Returns
    -------
    model : PersonalModel
        The personalized model (built on the rows not held out: the one measured).
    metrics : dict
        ``accuracy_personalized``, ``accuracy_alone``, ``gain`` (their difference), ``held_out_rows``,
        ``train_rows``, ``personalized_model`` and ``alone_model`` (the candidates chosen on validation).
    """
    y = np.asarray(y)
    (train, held), = validation_splits(y, fraction=HELD_OUT_FRACTION, splits=1,
                                       seed=personalization_seed(seed, "held-out"))
    alone = best_local_only(X[train], y[train], spec, seed=seed)
    personal = personalize(global_trajectory, final_global, X[train], y[train], spec, seed=seed, local_only=alone)
    mine = fm.accuracy(y[held], personal.predict(X[held]))
    theirs = fm.accuracy(y[held], alone.predict(X[held]))
    return personal, {
        "accuracy_personalized": float(mine), "accuracy_alone": float(theirs), "gain": float(mine - theirs),
        "held_out_rows": int(held.size), "train_rows": int(train.size),
        "personalized_model": personal.choice.label, "alone_model": alone.choice.label,
    }
