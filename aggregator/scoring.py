"""Round-level contribution scoring: what the aggregator posts on chain and the auditor recomputes.

One call of :func:`score_round` turns a round's inputs (the global model, every kept update and its
sample count, the bounty's strategy with its server-optimizer state, the validation set) into one
score per institution, as floats and as the chain's signed fixed-point integers.

The coalition utility
---------------------
``v(S)`` is the validation metric of the model the bounty's strategy produces from the updates of
the coalition ``S`` alone, applied to the round's global model (no retraining); ``v(empty)`` is the
global model's own metric. The metric is taken over the sponsor's population as the task declares it
(``spec.population``: pooled rows, equal weight per validation group, or explicit group weights;
:func:`fedcore.population.population_score`). Every coalition is aggregated by a fresh copy of the strategy:

- stateless strategies (FedAvg, FedProx, median, trimmed mean, Krum...) see only ``S``'s updates,
  so sample-weighted rules weight by ``S``'s own sample counts;
- server-optimizer strategies (FedAdam, FedYogi, FedAdagrad) carry moments across rounds: each
  coalition starts from a private copy of the round's starting state (``strategy_state``, the
  ``state_dict()`` taken before the round's real aggregation) and its own step never touches that
  state or any other coalition's. ``strategy_state=None`` means zero moments (the first round);
- a coalition smaller than the strategy's ``min_results`` keeps the global model, so it is worth
  ``v(empty)``;
- under the rules' server step search (:mod:`aggregator.stepsearch`), ``v(S)`` is the best value along the
  direction of ``S``'s aggregate over a fixed grid of step lengths, so an update that only rescales the step (a
  free rider's zero update) is worth 0 up to float rounding.

Coalition values are cached within the round (:class:`aggregator.shapley.CachedUtility`), so the
estimator pays for each distinct coalition once.

Reproducibility
---------------
Players are the institution ids in sorted order, never in the caller's dict order; the estimator's
randomness comes only from ``seed``; sums of means are correctly rounded (``math.fsum``); the one
wall-clock dependence is the ``seconds`` field. The same inputs give the same floats and the same
integers bit for bit, on the same software stack (the model's float32 forward pass is not required
to round identically on another CPU or torch build).

Defaults
--------
The estimator, its parameters and the utility metric below were chosen by ``make bench-shapley``
(``bench/shapley.py``: tuned on federation seeds 0-4, reported on held-out seeds; results and the
selection rule in ``bench/results/shapley.json``, keys documented in ``bench/README.md``):

- utility metric: validation **log loss** (``neg_loss``), whatever metric the task spec reports. On a
  validation set of a hundred-odd rows accuracy moves in steps of one row and AUC in steps of one
  pair, so a coalition's marginal is often a coin flip of a step; the log loss moves with every
  probability. Under it the budgeted estimator agrees best with exact Shapley. Pass
  ``utility_metric="task"`` to score with the spec's own metric.
- estimator: GTG with one guided sweep (see :data:`DEFAULT_ESTIMATOR_PARAMS`).

A coalition's model is aggregated and scored as a whole: nothing is retrained, so the cost of a round
is ``evaluations x (one aggregation + one forward pass over the validation set)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from aggregator import shapley
from aggregator.shapley import CachedUtility, ContributionEstimate
from aggregator.stepsearch import StepChoice, direction, search_step, step_along, step_lengths
from aggregator.strategies import Strategy, make_strategy, update_norm
from fedcore.errors import AggregatorError, DataError, FedLedgerError
from fedcore.metrics import ROW_METRICS, row_scores
from fedcore.models import model_from_weights, predict_proba, set_weights
from fedcore.population import group_weights, population_score, population_standard_error
from fedcore.rules import FIXED_POINT_SCALE, SCORE_QUANTUM
from fedcore.task import METRICS, TaskSpec
from fedcore.types import Update

Arrays = dict[str, np.ndarray]

# ---------------------------------------------------------------------------------------------------
# Defaults, chosen by the benchmark (make bench-shapley -> bench/results/shapley.json, "choice").
# ---------------------------------------------------------------------------------------------------

#: Estimator used when the bounty names none. Bench: GTG (guided "cycle" sweeps) is the only family
#: that stays within 10% of exact's evaluations at n = 10; TMC at that budget ranks far worse.
DEFAULT_ESTIMATOR = "gtg"

#: Parameters merged under the caller's ``estimator_params`` (bench "choice.estimator_params"): one
#: guided sweep of ``2n`` permutations (every institution leads once and takes every position once,
#: plus the mirrored sweep), untruncated: at most ``n(n-1) + 2`` evaluations (92 at n = 10, 9,902 at
#: n = 100). ``convergence_share`` 12 stops after that sweep unless the spread is huge against the
#: round's gain; then further sweeps follow (up to shapley's ``max_permutations``). Other estimators
#: keep shapley.py's defaults.
DEFAULT_ESTIMATOR_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {"gtg": MappingProxyType({"sampling": "cycle", "truncation_tolerance": 0.0, "convergence_share": 12.0})}
)

#: The metric of the utility: ``"task"`` scores coalitions with the task spec's metric; a metric name
#: (``"accuracy"``, ``"auc"``, ``"neg_loss"``) overrides it. Bench: validation log loss (``"neg_loss"``)
#: is smooth where accuracy on a 122-row validation set moves in steps of 1/122; under it the budgeted
#: GTG agrees best with its own exact Shapley (bench "utility_metrics").
DEFAULT_UTILITY_METRIC = "neg_loss"

#: The chain contract takes int256 scores with 18 decimals and refuses ``|score| > 1e36``.

CHAIN_SCORE_CAP = 10**36


# ---------------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundScores:
    """Contribution scores of one round.

    Attributes
    ----------
    values : dict[str, float]
        Institution id -> value in utility units, normalized so they sum to ``v_grand - v_empty``
        (up to float rounding); keys in sorted order.
    std_errors : dict[str, float]
        Standard error of each value (zeros for deterministic estimators), scaled like the values.
    fixed_point : dict[str, int]
        The on-chain scores: the values rounded to ``fedcore.rules.SCORE_DECIMALS`` decimals, as int256 with 18
        decimals (multiples of ``SCORE_QUANTUM``: what a scoring committee can agree on); in a round's outcome,
        capped at 0 for the updates the contribution gate left out, and 0 for a negative value within its spread
        (:func:`aggregator.gate.on_chain_scores`).
    evaluations : int
        Distinct coalitions whose utility was computed (empty and grand included).
    v_empty : float
        Utility of the round's global model.
    v_grand : float
        Utility of the model aggregated from every update.
    estimator : str
        Registry name of the estimator used.
    seconds : float
        Wall-clock time of the call (the only field that is not reproducible).
    metric : str or None
        The metric the utility used (``"accuracy"``, ``"auc"`` or ``"neg_loss"``; None if unknown).
    estimator_params : dict
        The estimator parameters used (defaults merged with the caller's).
    permutations : int
        Completed permutations (0 for estimators that do not sample).
    converged : bool
        False when a sampling estimator stopped on a cap before its tolerance was met.
    row_std_errors : dict[str, float]
        Standard error of each value over the sponsor's validation rows (``score_round(row_spread=True)``: the
        value split row by row, :func:`aggregator.shapley.row_values`, and its stratified spread under the task's
        population, :func:`fedcore.population.population_standard_error`), scaled like the values; empty when not
        computed.
    """

    values: dict[str, float]
    std_errors: dict[str, float]
    fixed_point: dict[str, int]
    evaluations: int
    v_empty: float
    v_grand: float
    estimator: str
    seconds: float
    metric: str | None = None
    estimator_params: dict[str, Any] | None = None
    permutations: int = 0
    converged: bool = True
    row_std_errors: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """``v_grand - v_empty``: what the values sum to."""
        return self.v_grand - self.v_empty

    def reproducible_fields(self) -> dict[str, Any]:
        """Every field but ``seconds``: what an auditor's recomputation must equal exactly."""
        return {
            "values": dict(self.values),
            "std_errors": dict(self.std_errors),
            "fixed_point": dict(self.fixed_point),
            "evaluations": self.evaluations,
            "v_empty": self.v_empty,
            "v_grand": self.v_grand,
            "estimator": self.estimator,
            "metric": self.metric,
            "estimator_params": dict(self.estimator_params or {}),
            "permutations": self.permutations,
            "converged": self.converged,
            "row_std_errors": dict(self.row_std_errors),
        }


# ---------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------


def _check_weights(global_weights: Any) -> Arrays:
    if not isinstance(global_weights, Mapping) or not global_weights:
        raise AggregatorError("global_weights must be a non-empty mapping name -> array")
    out: Arrays = {}
    for name in sorted(global_weights, key=str):  # canonical order: no dependence on the caller's
        array = global_weights[name]
        if not isinstance(name, str):
            raise AggregatorError(f"global weight names must be strings, got {name!r}")
        array = np.asarray(array)
        if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
            raise AggregatorError(f"global weight {name!r} is not finite numeric")
        out[name] = array
    return out


def _check_updates(updates: Any, global_weights: Mapping[str, np.ndarray]) -> list[Update]:
    """The updates sorted by institution, each checked and with its arrays in the model's tensor order; raises on
    anything malformed."""
    if isinstance(updates, Mapping | str | bytes) or not isinstance(updates, Sequence | tuple):
        raise AggregatorError(f"updates must be a sequence of Update, got {type(updates).__name__}")
    if not updates:
        raise AggregatorError("no updates to score")
    for update in updates:
        if not isinstance(update, Update):
            raise AggregatorError(f"updates must be Update objects, got {type(update).__name__}")
        if not isinstance(update.institution, str) or not update.institution:
            raise AggregatorError(f"institution ids must be non-empty strings, got {update.institution!r}")
    ids = [u.institution for u in updates]
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i in ids if ids.count(i) > 1)
        raise AggregatorError(f"an institution has two updates in one round: {repeated}")
    checked_updates: list[Update] = []
    names = set(global_weights)
    for update in sorted(updates, key=lambda u: u.institution):
        cid, arrays, count = update.institution, update.arrays, update.num_samples
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count <= 0:
            raise AggregatorError(f"update of {cid}: sample count must be a positive integer, got {count!r}")
        if not isinstance(arrays, Mapping) or set(arrays) != names:
            got = sorted(arrays) if isinstance(arrays, Mapping) else type(arrays).__name__
            raise AggregatorError(f"update of {cid}: tensors {got} do not match the model's {sorted(names)}")
        checked: Arrays = {}
        for name in global_weights:  # the model's tensor order
            array = np.asarray(arrays[name])
            if array.shape != np.shape(global_weights[name]):
                expected = np.shape(global_weights[name])
                raise AggregatorError(f"update of {cid}: tensor {name!r} has shape {array.shape}, expected {expected}")
            if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
                raise AggregatorError(f"update of {cid}: tensor {name!r} is not finite numeric")
            checked[name] = array
        checked_updates.append(Update(cid, checked, int(count), update.metrics))
    return checked_updates


def check_validation(X_val: Any, y_val: Any) -> tuple[np.ndarray, np.ndarray]:
    """The validation set as arrays; AggregatorError when it is missing or malformed."""
    if X_val is None or y_val is None:
        raise AggregatorError("scoring needs a validation set (X_val, y_val)")
    X = np.asarray(X_val, dtype=np.float32)
    y = np.asarray(y_val, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] == 0:
        raise AggregatorError(f"X_val must be a non-empty 2-D array (rows, features), got shape {X.shape}")
    if X.shape[0] != y.shape[0]:
        raise AggregatorError(f"X_val has {X.shape[0]} rows but y_val has {y.shape[0]} labels")
    if not np.isfinite(X).all():
        raise AggregatorError("X_val contains NaN or Inf")
    if not np.isin(y, (0.0, 1.0)).all():
        raise AggregatorError("y_val must be 0/1 labels")
    return X, y


def _check_groups(groups_val: Any, y_val: np.ndarray) -> tuple[str, ...] | None:
    if groups_val is None:
        return None
    if isinstance(groups_val, str) or not all(isinstance(g, str) for g in groups_val):
        raise AggregatorError("groups_val must be a sequence of strings, one per validation row")
    groups = tuple(groups_val)
    if len(groups) != y_val.shape[0]:
        raise AggregatorError(f"groups_val has {len(groups)} values but the validation set {y_val.shape[0]} rows")
    return groups


def resolve_metric(spec: TaskSpec, utility_metric: str | None = None) -> str:
    """The metric the utility uses: ``utility_metric``, else :data:`DEFAULT_UTILITY_METRIC`;
    ``"task"`` means the task spec's own metric."""
    choice = DEFAULT_UTILITY_METRIC if utility_metric is None else utility_metric
    metric = spec.metric if choice == "task" else choice
    if metric not in METRICS:
        raise AggregatorError(f"unknown utility metric {choice!r}; choose 'task' or one of {list(METRICS)}")
    return metric


def _make_round_strategy(name: str, params: Mapping[str, Any] | None) -> Strategy:
    try:
        return make_strategy(name, **dict(params or {}))
    except FedLedgerError as error:
        raise AggregatorError(f"cannot build strategy {name!r} for scoring: {error}") from None


def _copy_state(state: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in (state or {}).items()}


# ---------------------------------------------------------------------------------------------------
# The coalition utility
# ---------------------------------------------------------------------------------------------------


class CoalitionUtility:
    """``v(S)`` of one round: players ``0 .. n-1`` are the institution ids in sorted order.

    Build it with :func:`coalition_utility`. Calling it with a ``frozenset[int]`` returns the metric
    (higher is better) of the coalition's aggregated model on the validation set; it is deterministic
    and does not cache (wrap it in :class:`aggregator.shapley.CachedUtility`, as :func:`score_round`
    does).

    Attributes
    ----------
    ids : tuple of str
        Institution id of each player.
    metric : str
        The metric used.
    results : tuple of Update
        Each player's update and sample count, in player order.
    group_weights : dict[str, float] or None
        The validation groups' weights under the task's population (None: pooled).
    step_search : Mapping or None
        The rules' server step search (:mod:`aggregator.stepsearch`): when set, a coalition's model is the best
        point along its aggregate's direction (:meth:`model`), over step lengths scaled by the largest norm among
        the players' updates.
    forward_passes : int
        Models evaluated on the validation set so far (the cost of the round's scoring).
    """

    def __init__(
        self,
        *,
        global_weights: Mapping[str, np.ndarray],
        updates: list[Update],
        strategy_name: str,
        strategy_params: Mapping[str, Any] | None,
        strategy_state: Mapping[str, Any] | None,
        spec: TaskSpec,
        X_val: np.ndarray,
        y_val: np.ndarray,
        metric: str,
        server_round: int = 0,
        groups_val: tuple[str, ...] | None = None,
        step_search: Mapping[str, Any] | None = None,
    ):
        self.ids = tuple(u.institution for u in updates)
        self.n = len(updates)
        self.metric = metric
        self.spec = spec
        self.server_round = int(server_round)
        self._global = {k: np.asarray(v, dtype=np.float32).copy() for k, v in global_weights.items()}
        self.results = tuple(updates)
        self._strategy = _make_round_strategy(strategy_name, strategy_params)
        self._state = _copy_state(strategy_state)  # private: the caller's arrays are never touched
        self._X, self._y = X_val, y_val
        try:
            self.group_weights = group_weights(groups_val, spec.population)
        except DataError as error:
            raise AggregatorError(f"cannot score this round: {error}") from None
        self._groups = groups_val
        #: Each evaluated coalition's per-row scores (metrics that are a mean over rows), for :meth:`per_row`.
        self._rows: dict[frozenset[int], np.ndarray] = {}
        self.step_search = None if step_search is None else dict(step_search)
        self.forward_passes = 0
        if self.step_search is not None:
            scale = max(update_norm(u.arrays) for u in updates)
            self._lengths = step_lengths(scale, max_multiplier=self.step_search["max_multiplier"],
                                         octaves=self.step_search["octaves"],
                                         per_octave=self.step_search["per_octave"])
        try:
            self._model = model_from_weights(spec, self._global, n_features=X_val.shape[1])
            self._strategy.load_state_dict(_copy_state(self._state))
        except FedLedgerError as error:
            raise AggregatorError(f"cannot score this round: {error}") from None

    def weights(self, coalition: frozenset[int]) -> Arrays:
        """The model the strategy builds from ``coalition``'s updates (the global model if empty)."""
        members = sorted(coalition)
        if any(not (0 <= p < self.n) for p in members):
            raise AggregatorError(f"coalition {members} has players outside 0..{self.n - 1}")
        if not members:
            return {k: v.copy() for k, v in self._global.items()}
        # A fresh start for every coalition: the round's starting optimizer state, copied.
        self._strategy.load_state_dict(_copy_state(self._state))
        aggregate = self._strategy.aggregate_fit(self.server_round, self._global, [self.results[p] for p in members])
        return aggregate.weights

    def model(self, coalition: frozenset[int]) -> tuple[Arrays, StepChoice | None]:
        """The coalition's model and, under the step search, the step it took (None without the search or for the
        empty coalition, whose model is the global one)."""
        moved = self.weights(frozenset(coalition))
        if self.step_search is None or not coalition:
            return moved, None
        unit, _ = direction(self._global, moved)
        choice = search_step(lambda t: self.score(step_along(self._global, unit, t)), self._lengths,
                             self.step_search["refinements"], self.step_search["tolerance"])
        return step_along(self._global, unit, choice.length), choice

    def predict(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
        """Positive-class probabilities of the model with ``weights`` on the validation rows."""
        set_weights(self._model, weights)
        return predict_proba(self._model, self._X)

    def score(self, weights: Mapping[str, np.ndarray]) -> float:
        """The utility metric of the model with ``weights`` under the task's population."""
        return self._score(self.predict(weights))

    def _score(self, probabilities: np.ndarray) -> float:
        self.forward_passes += 1
        return float(population_score(self.metric, self._y, probabilities, self._groups, self.group_weights))

    def __call__(self, coalition: frozenset[int]) -> float:
        key = frozenset(coalition)
        weights, choice = self.model(key)
        if self.metric not in ROW_METRICS:
            return choice.value if choice is not None else self.score(weights)
        # The chosen model's rows, evaluated once more under the step search (the same bits as the search's value).
        probabilities = self.predict(weights)
        self._rows[key] = row_scores(self.metric, self._y, probabilities)
        return self._score(probabilities)

    def per_row(self, coalition: frozenset[int]) -> np.ndarray:
        """Each validation row's score under an already evaluated coalition (shape (m,)); the population mean of it
        is ``self(coalition)``."""
        try:
            return self._rows[frozenset(coalition)]
        except KeyError:
            raise AggregatorError(f"coalition {sorted(coalition)} has no per-row scores (metric {self.metric!r} "
                                  f"is not a mean over rows, or it was not evaluated)") from None

    def row_std_errors(self, form: shapley.LinearForm) -> np.ndarray:
        """Standard error over the validation rows of each value of an estimate with this linear form (shape (n,))."""
        return population_standard_error(shapley.row_values(form, self.per_row), self._groups, self.group_weights)


def coalition_utility(
    *,
    global_weights: Mapping[str, np.ndarray],
    updates: Sequence[Update],
    strategy_name: str,
    strategy_params: Mapping[str, Any] | None,
    strategy_state: Mapping[str, Any] | None,
    spec: TaskSpec,
    X_val: np.ndarray,
    y_val: np.ndarray,
    utility_metric: str | None = None,
    server_round: int = 0,
    groups_val: Sequence[str] | None = None,
    step_search: Mapping[str, Any] | None = None,
) -> CoalitionUtility:
    """The round's coalition utility ``v(S)`` (see the module doc), players = sorted institution ids.

    Parameters
    ----------
    global_weights : Mapping[str, np.ndarray]
        The round's global model (what the institutions trained from).
    updates : sequence of Update
        One per institution: the delta ``w_local - w_global`` with the global weights' names and shapes, and a
        sample count > 0. Their order does not matter.
    strategy_name, strategy_params : str, Mapping or None
        The bounty's strategy, as :func:`aggregator.strategies.make_strategy` takes them.
    strategy_state : Mapping or None
        The strategy's ``state_dict()`` at the round's start (None or empty: no state / zero moments).
        Copied; never mutated.
    spec : TaskSpec
        The task (model architecture and metric).
    X_val : np.ndarray, shape (m, d)
        Validation features, preprocessed like the training data.
    y_val : np.ndarray, shape (m,)
        Validation labels, 0/1.
    utility_metric : str, optional
        ``"task"`` or a metric name; default :data:`DEFAULT_UTILITY_METRIC`.
    server_round : int
        Passed to the strategy (no built-in strategy uses it).
    groups_val : sequence of str, length m, optional
        Each validation row's group; needed when ``spec.population`` weights groups.
    step_search : Mapping, optional
        The rules' server step search (:attr:`fedcore.rules.RoundRules.step_search`); None: off.

    Returns
    -------
    CoalitionUtility
        Callable ``frozenset[int] -> float``; ``.ids`` maps players to institution ids.

    Raises
    ------
    AggregatorError
        On malformed updates, weights or validation data, or an unknown strategy or metric.
    """
    weights = _check_weights(global_weights)
    checked = _check_updates(updates, weights)
    X, y = check_validation(X_val, y_val)
    if not isinstance(spec, TaskSpec):
        raise AggregatorError(f"spec must be a TaskSpec, got {type(spec).__name__}")
    return CoalitionUtility(
        global_weights=weights,
        updates=checked,
        strategy_name=strategy_name,
        strategy_params=strategy_params,
        strategy_state=strategy_state,
        spec=spec,
        X_val=X,
        y_val=y,
        metric=resolve_metric(spec, utility_metric),
        server_round=server_round,
        groups_val=_check_groups(groups_val, y),
        step_search=step_search,
    )


# ---------------------------------------------------------------------------------------------------
# Scoring a round
# ---------------------------------------------------------------------------------------------------


#: Estimators that take ``convergence_tolerance`` (and so the scoring-level ``convergence_share``).
SAMPLING_ESTIMATORS = frozenset({"mc", "tmc", "gtg"})


def estimator_settings(estimator: str, estimator_params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters :func:`score_round` uses: the bench-chosen defaults overridden by the caller's.

    Besides the estimator's own keywords, the sampling estimators (mc, tmc, gtg) accept
    ``convergence_share``: the convergence tolerance as a share of an equal split of the total, i.e.
    ``convergence_tolerance = convergence_share / n``, resolved when ``n`` is known (the library's
    default is ``0.75 / n``). A caller's ``convergence_tolerance`` overrides a default share.
    """
    if estimator not in shapley.ESTIMATORS:
        raise AggregatorError(
            f"unknown contribution estimator {estimator!r}; choose one of {sorted(shapley.ESTIMATORS)}"
        )
    if estimator_params is not None and not isinstance(estimator_params, Mapping):
        raise AggregatorError(f"estimator_params must be a mapping, got {type(estimator_params).__name__}")
    given = dict(estimator_params or {})
    defaults = dict(DEFAULT_ESTIMATOR_PARAMS.get(estimator, {}))
    if "convergence_tolerance" in given:
        defaults.pop("convergence_share", None)
    if "convergence_share" in given:
        defaults.pop("convergence_tolerance", None)
    params = {**defaults, **given}
    if "seed" in params:
        raise AggregatorError("pass the seed as score_round(seed=...), not in estimator_params")
    if "convergence_share" in params:
        share = params["convergence_share"]
        if estimator not in SAMPLING_ESTIMATORS:
            raise AggregatorError(f"estimator {estimator!r} does not take convergence_share")
        if "convergence_tolerance" in params:
            raise AggregatorError("give convergence_share or convergence_tolerance, not both")
        if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share) or share < 0:
            raise AggregatorError(f"convergence_share must be a finite number >= 0, got {share!r}")
    # Checked now (names and values), with the share standing in for a tolerance.
    shapley.make_estimator(estimator, **_resolve_share(params, 1))
    return params


def _resolve_share(params: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``convergence_share`` -> ``convergence_tolerance = share / n``."""
    out = dict(params)
    if "convergence_share" in out:
        out["convergence_tolerance"] = float(out.pop("convergence_share")) / n
    return out


def score_round(
    *,
    global_weights: Mapping[str, np.ndarray],
    updates: Sequence[Update],
    strategy_name: str,
    strategy_params: Mapping[str, Any] | None,
    strategy_state: Mapping[str, Any] | None,
    spec: TaskSpec,
    X_val: np.ndarray,
    y_val: np.ndarray,
    estimator: str = DEFAULT_ESTIMATOR,
    estimator_params: Mapping[str, Any] | None = None,
    seed: int,
    utility_metric: str | None = None,
    server_round: int = 0,
    groups_val: Sequence[str] | None = None,
    row_spread: bool = False,
    step_search: Mapping[str, Any] | None = None,
) -> RoundScores:
    """Score every institution's update of one round.

    Parameters
    ----------
    global_weights, updates, strategy_name, strategy_params, strategy_state, spec, X_val, y_val
        As in :func:`coalition_utility`.
    estimator : str
        A name of :data:`aggregator.shapley.ESTIMATORS` (default :data:`DEFAULT_ESTIMATOR`).
    estimator_params : Mapping, optional
        Its parameters, merged over :data:`DEFAULT_ESTIMATOR_PARAMS` (no ``seed``); mc, tmc and gtg
        also take ``convergence_share`` (see :func:`estimator_settings`).
    seed : int
        Seed of the estimator's sampling (>= 0).
    utility_metric : str, optional
        ``"task"`` or a metric name; default :data:`DEFAULT_UTILITY_METRIC`.
    server_round : int
        Passed to the strategy, as in the round's real aggregation.
    groups_val, step_search : optional
        As in :func:`coalition_utility`.
    row_spread : bool
        Also give each value's standard error over the validation rows (``RoundScores.row_std_errors``); needs a
        metric that is a mean over rows (accuracy, log loss) and an estimator other than ``alignment``. No extra
        utility evaluation: the coalitions' per-row scores are kept as they are computed.

    Returns
    -------
    RoundScores
        Values normalized to sum to ``v(N) - v(empty)`` (:func:`aggregator.shapley.normalize_to_total`)
        and their fixed-point integers. For ``"alignment"`` (cosines, no utility) the cosines are
        normalized to the same total, which costs the two evaluations ``v(empty)`` and ``v(N)``.

    Raises
    ------
    AggregatorError
        On malformed input (naming the institution), an unknown strategy, estimator or parameter,
        or a score beyond the chain's cap.
    """
    started = time.perf_counter()
    shapley._check_seed(seed)
    params = estimator_settings(estimator, estimator_params)
    utility = coalition_utility(
        global_weights=global_weights,
        updates=updates,
        strategy_name=strategy_name,
        strategy_params=strategy_params,
        strategy_state=strategy_state,
        spec=spec,
        X_val=X_val,
        y_val=y_val,
        utility_metric=utility_metric,
        server_round=server_round,
        groups_val=groups_val,
        step_search=step_search,
    )
    n = utility.n
    bound = shapley.make_estimator(estimator, **_resolve_share(params, n))
    cache = CachedUtility(utility, n=n)
    if bound.needs_utility:
        estimate = bound(n, cache, seed=int(seed))
        if (estimator == "gtg" and step_search is not None and estimate.grand_value == estimate.empty_value
                and not any(estimate.values)):
            # Under the step search a gain of exactly 0 means the grand coalition's best step is none at all (its
            # direction is uphill), not that the players cannot be told apart: one update can cancel the others'
            # gain. GTG's round truncation would zero every value, hide that harm from the gate and freeze the
            # model for as long as it goes on; such a round is valued without the truncation.
            untruncated = {**_resolve_share(params, n), "round_truncation_threshold": 0.0}
            estimate = shapley.make_estimator(estimator, **untruncated)(n, cache, seed=int(seed))
    else:
        cosines = bound([r.arrays for r in utility.results], weights=[r.num_samples for r in utility.results])
        empty, grand = cache(frozenset()), cache(frozenset(range(n)))
        estimate = ContributionEstimate(
            values=cosines.values,
            std_errors=cosines.std_errors,
            evaluations=cache.evaluations,
            method=cosines.method,
            grand_value=grand,
            empty_value=empty,
        )
    if row_spread:
        if estimate.form is None or utility.metric not in ROW_METRICS:
            raise AggregatorError(f"a spread over the validation rows needs a metric that is a mean over rows "
                                  f"({', '.join(ROW_METRICS)}) and a utility estimator; got {utility.metric!r} and "
                                  f"{estimator!r}")
        estimate = replace(estimate, row_std_errors=utility.row_std_errors(estimate.form))
    normalized = shapley.normalize_estimate(estimate)
    # rounded once, from the float, to the rules' decimals (what a committee can agree on), then in 18-decimal units
    fixed = [q * SCORE_QUANTUM for q in shapley.to_fixed_point(normalized.values, FIXED_POINT_SCALE // SCORE_QUANTUM)]
    for cid, integer in zip(utility.ids, fixed):
        if abs(integer) > CHAIN_SCORE_CAP:
            raise AggregatorError(f"the score of {cid} ({integer}) exceeds the chain's cap of 1e36")
    values = [float(v) for v in normalized.values]
    errors = [float(e) for e in normalized.std_errors]
    return RoundScores(
        values=dict(zip(utility.ids, values)),
        std_errors=dict(zip(utility.ids, errors)),
        fixed_point=dict(zip(utility.ids, fixed)),
        evaluations=int(estimate.evaluations),
        v_empty=float(estimate.empty_value),
        v_grand=float(estimate.grand_value),
        estimator=estimator,
        seconds=time.perf_counter() - started,
        metric=utility.metric,
        estimator_params=params,
        permutations=int(estimate.permutations),
        converged=bool(estimate.converged),
        row_std_errors={} if normalized.row_std_errors is None
        else dict(zip(utility.ids, (float(e) for e in normalized.row_std_errors))),
    )


__all__ = [
    "CHAIN_SCORE_CAP",
    "DEFAULT_ESTIMATOR",
    "DEFAULT_ESTIMATOR_PARAMS",
    "DEFAULT_UTILITY_METRIC",
    "FIXED_POINT_SCALE",
    "CoalitionUtility",
    "RoundScores",
    "coalition_utility",
    "estimator_settings",
    "resolve_metric",
    "score_round",
]
