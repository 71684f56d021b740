"""In-process federated simulation (no chain, no network).

One call runs R rounds of: every institution trains locally from the global weights (with the rules' fit
config) -> :func:`aggregator.rounds.compute_round` (the same computation the aggregator and the auditor run)
-> evaluation of the new global model. It is the engine of the benchmarks and of the demo's baselines, which
is why every round is kept as a :class:`SimulatedRound`.

Everything is a deterministic function of (institutions' data, task spec, rules, seed) through the seeds of
:mod:`fedcore.seeds`: ``seed`` replaces the task's ``training.seed``, so the initial model and every
institution's training draw from exactly the streams a deployment of that task uses. Name the institutions by
their addresses and a simulation reproduces a deployed federation's models bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aggregator.rounds import RoundInputs, RoundOutcome, compute_round
from aggregator.strategies import FitFailure
from fedcore import metrics as fm
from fedcore.errors import ConfigError, FedLedgerError
from fedcore.models import initial_weights, predict_with_weights
from fedcore.rules import RoundRules
from fedcore.seeds import centralized_seed, training_seed
from fedcore.task import TaskSpec
from fedcore.types import Update
from node.training import apply_update, train_local

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Institution:
    """One simulated institution's data.

    Attributes
    ----------
    name : str
        Stable identifier (also the client id the strategy sees).
    X_train : np.ndarray, shape (n_train, d), float32
    y_train : np.ndarray, shape (n_train,), 0/1
    X_test : np.ndarray, shape (n_test, d), optional
    y_test : np.ndarray, shape (n_test,), optional
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @classmethod
    def from_site(cls, site) -> Institution:
        """From a :class:`fedsets.data.SiteData` (train part to train, test part to evaluate)."""
        return cls(site.name, site.X_train, site.y_train, site.X_test, site.y_test)


@dataclass(frozen=True)
class SimulatedRound:
    """One simulated round: what its computation saw and produced.

    Attributes
    ----------
    round : int
        1-based round number.
    global_weights : dict[str, np.ndarray]
        The weights the institutions trained from.
    updates : tuple of Update
        Delivered updates (after ``transform_update``), sorted by institution.
    failures : tuple of FitFailure
    outcome : RoundOutcome
        ``outcome.weights`` is the next round's global model; ``outcome.scores`` is set when scoring.
    evaluation : dict
        :func:`evaluate_federation` of ``outcome.weights``.
    """

    round: int
    global_weights: Arrays
    updates: tuple[Update, ...]
    failures: tuple[FitFailure, ...]
    outcome: RoundOutcome
    evaluation: dict


@dataclass(frozen=True)
class SimulationResult:
    """Output of :func:`run_simulation`.

    Attributes
    ----------
    initial_weights, final_weights : dict[str, np.ndarray]
    history : list of dict
        ``history[0]`` evaluates the initial model, ``history[r]`` the model after round r.
    rounds : list of SimulatedRound
        Empty when ``keep_records=False``.
    """

    initial_weights: Arrays
    final_weights: Arrays
    history: list[dict]
    rounds: list[SimulatedRound]

    @property
    def final(self) -> dict:
        return self.history[-1]


UpdateTransform = Callable[[int, str, Update], "Update | None"]
RoundCallback = Callable[[SimulatedRound], None]


def evaluate_weights(
    spec: TaskSpec, weights: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray
) -> dict[str, float]:
    """Accuracy, AUC and log loss of the model with ``weights`` on ``(X, y)``."""
    return fm.all_metrics(y, predict_with_weights(spec, weights, X))


def evaluate_federation(
    spec: TaskSpec,
    weights: Mapping[str, np.ndarray],
    institutions: Sequence[Institution],
    extra_sets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """Evaluate one model on every institution's test part.

    Returns
    -------
    dict
        ``{"centers": {name: metrics}, "mean_center": metrics averaged over centers,
        "all_test_rows": metrics over the union of the test rows (each institution's rows scaled
        by its own preprocessing), **{name: metrics for extra_sets}}``; ``metrics`` =
        ``{"accuracy", "auc", "loss"}``.
    """
    centers: dict[str, dict[str, float]] = {}
    y_all, p_all = [], []
    for inst in institutions:
        if inst.X_test is None or inst.y_test is None or len(inst.y_test) == 0:
            continue
        prob = predict_with_weights(spec, weights, inst.X_test)
        centers[inst.name] = fm.all_metrics(inst.y_test, prob)
        y_all.append(np.asarray(inst.y_test))
        p_all.append(prob)
    out: dict = {"centers": centers}
    if centers:
        out["mean_center"] = {k: float(np.mean([m[k] for m in centers.values()])) for k in ("accuracy", "auc", "loss")}
        out["all_test_rows"] = fm.all_metrics(np.concatenate(y_all), np.concatenate(p_all))
    for name, (X, y) in (extra_sets or {}).items():
        out[name] = evaluate_weights(spec, weights, X, y)
    return out


def run_simulation(
    institutions: Sequence[Institution],
    spec: TaskSpec,
    rules: RoundRules,
    *,
    rounds: int,
    seed: int,
    initial: Mapping[str, np.ndarray] | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    validation_groups: Sequence[str] | None = None,
    extra_eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    transform_update: UpdateTransform | None = None,
    on_round: RoundCallback | None = None,
    keep_records: bool = True,
    evaluate_every_round: bool = True,
) -> SimulationResult:
    """Run ``rounds`` federated rounds in process.

    Parameters
    ----------
    institutions : sequence of Institution
        Names must be unique; all share the feature width ``d``.
    spec : TaskSpec
        Model and local-training settings; ``spec.training.seed`` is replaced by ``seed``.
    rules : RoundRules
        Strategy (and, when scoring, estimator, utility and scoring seed), as a bounty fixes them
        (:func:`aggregator.rules.resolve_rules`).
    rounds : int
    seed : int
        The task seed: root of the initial weights and of every institution's training.
    initial : Mapping, optional
        Start from these weights instead of the task's initial model.
    validation : (X, y), optional
        The sponsor's validation set: when given, every round's updates are scored with the rules.
    validation_groups : sequence of str, optional
        Each validation row's group, for a task whose population weights groups (``spec.population``).
    extra_eval_sets : Mapping[str, (X, y)], optional
        More test sets evaluated each round (e.g. a pooled test set with its own scaling).
    transform_update : callable ``(round, name, Update) -> Update | None``, optional
        Lets a simulation play attackers (return a poisoned update) or crashes (return ``None``,
        recorded as a failure).
    on_round : callable ``(SimulatedRound) -> None``, optional
        Called after each round (progress bars, streaming contribution scores).
    keep_records : bool
        Keep every :class:`SimulatedRound` in the result (memory grows with rounds x institutions).
    evaluate_every_round : bool
        ``False`` evaluates only the initial and the final model (faster tuning).

    Returns
    -------
    SimulationResult
    """
    if rounds < 0:
        raise ConfigError(f"rounds must be >= 0, got {rounds!r}")
    names = [inst.name for inst in institutions]
    if not names or len(set(names)) != len(names):
        raise ConfigError("institutions must be non-empty with unique names")
    widths = {np.shape(inst.X_train)[1] for inst in institutions}
    if len(widths) != 1:
        raise ConfigError(f"institutions disagree on the number of features: {sorted(widths)}")
    run_spec = spec.with_training(seed=int(seed))
    weights: Arrays = (
        {k: np.asarray(v, dtype=np.float32).copy() for k, v in initial.items()}
        if initial is not None
        else initial_weights(run_spec, widths.pop())
    )
    start = weights
    state: Mapping[str, np.ndarray] = {}
    config = rules.fit_config()
    X_val, y_val = validation if validation is not None else (None, None)
    history = [evaluate_federation(run_spec, weights, institutions, extra_eval_sets)]
    records: list[SimulatedRound] = []
    for r in range(1, rounds + 1):
        updates: list[Update] = []
        failures: list[FitFailure] = []
        for inst in institutions:
            try:
                local = train_local(weights, inst.X_train, inst.y_train, run_spec,
                                    seed=training_seed(run_spec.training.seed, r, inst.name), config=config,
                                    institution=inst.name)
            except FedLedgerError as error:  # a node failing is data for the strategy, not a crash
                failures.append(FitFailure(inst.name, str(error)))
                continue
            if transform_update is not None:
                delivered = transform_update(r, inst.name, local)
                if delivered is None:
                    failures.append(FitFailure(inst.name, "no update delivered"))
                    continue
                local = delivered
            updates.append(local)
        inputs = RoundInputs(round=r, global_weights=weights, updates=tuple(updates), strategy_state=state,
                             X_val=X_val, y_val=y_val, failures=tuple(failures),
                             groups_val=None if validation_groups is None else tuple(validation_groups))
        outcome = compute_round(inputs, rules, run_spec, score=validation is not None)
        last = r == rounds
        evaluation = (
            evaluate_federation(run_spec, outcome.weights, institutions, extra_eval_sets)
            if evaluate_every_round or last
            else {}
        )
        record = SimulatedRound(r, weights, tuple(sorted(updates, key=lambda u: u.institution)), tuple(failures),
                                outcome, evaluation)
        if keep_records:
            records.append(record)
        if evaluation:
            history.append(evaluation)
        if on_round is not None:
            on_round(record)
        weights, state = outcome.weights, outcome.strategy_state
    return SimulationResult(initial_weights=start, final_weights=weights, history=history, rounds=records)


def train_centralized(
    X: np.ndarray,
    y: np.ndarray,
    spec: TaskSpec,
    *,
    seed: int,
    initial: Mapping[str, np.ndarray] | None = None,
) -> Arrays:
    """One-site training (the pooled and local-only baselines) with ``spec.training`` as is.

    The model starts from ``initial`` or the same task initial model as :func:`run_simulation`, so
    baselines and federated runs of one seed share their start.
    """
    run_spec = spec.with_training(seed=int(seed))
    start = (
        {k: np.asarray(v, dtype=np.float32) for k, v in initial.items()}
        if initial is not None
        else initial_weights(run_spec, np.shape(X)[1])
    )
    local = train_local(start, X, y, run_spec, seed=centralized_seed(seed))
    return apply_update(start, local.arrays)
