"""Resolving a bounty's round rules from names and overrides into :class:`fedcore.rules.RoundRules`.

The sponsor resolves the rules once, when it creates the bounty, and fixes their hash on chain; from then on
every party uses the resolved object and never this module's (or the strategies' and estimators') defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from aggregator import shapley
from aggregator.scoring import DEFAULT_ESTIMATOR, DEFAULT_UTILITY_METRIC, estimator_settings
from aggregator.strategies import Strategy, make_strategy
from fedcore.errors import AggregatorError, ConfigError, FedLedgerError
from fedcore.metrics import ROW_METRICS
from fedcore.rules import ROW_SPREAD, STEP_SEARCH, RoundRules
from fedcore.task import TaskSpec

#: Estimator keywords that are call-time inputs, not rules.
_CALL_TIME = frozenset({"seed", "weights"})
#: The RoundRules fields of the contribution gate (:mod:`aggregator.gate`).
GATE_FIELDS = frozenset({"exclude_harmful", "harm_spread", "harm_margin", "gate_after", "zero_within_spread",
                         "pay_only_gain", "row_spread"})


def resolve_rules(
    *,
    spec: TaskSpec | None = None,
    strategy: str = "fedavg",
    strategy_params: Mapping[str, Any] | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    estimator_params: Mapping[str, Any] | None = None,
    utility_metric: str | None = None,
    seed: int = 0,
    gate: Mapping[str, Any] | None = None,
    step_search: Mapping[str, Any] | None = None,
) -> RoundRules:
    """Every setting that decides a round, with each default written out.

    Parameters
    ----------
    spec : TaskSpec, optional
        The bounty's task (``utility_metric="task"`` takes its metric, and needs it).
    strategy, strategy_params
        Strategy name and overrides; the result holds the strategy's full ``hyperparameters()``.
    estimator, estimator_params
        Estimator name and overrides; merged over the bench-chosen defaults and then over the estimator's own
        keyword defaults.
    utility_metric : str, optional
        ``"task"``, a metric name, or None for :data:`aggregator.scoring.DEFAULT_UTILITY_METRIC`.
    seed : int
        Root of the scoring seeds.
    gate : Mapping, optional
        Overrides of the contribution gate's fields (:data:`GATE_FIELDS`: ``exclude_harmful``, ``harm_spread``,
        ``harm_margin``, ``gate_after``, ``zero_within_spread``, ``pay_only_gain``, ``row_spread``); the rest keep
        :mod:`fedcore.rules`' defaults, except that ``row_spread`` is off by default for a metric that is not a mean
        over rows (AUC), which has no per-row split.
    step_search : Mapping, optional
        Turns the server step search on (:mod:`aggregator.stepsearch`): overrides of
        :data:`fedcore.rules.STEP_SEARCH` (``{}`` takes its defaults). None leaves it off.

    Raises
    ------
    ConfigError
        One line naming the unknown strategy, estimator, parameter or metric.
    """
    try:
        built = make_strategy(strategy, **dict(strategy_params or {}))
        merged = estimator_settings(estimator, estimator_params)
    except FedLedgerError as error:
        raise ConfigError(str(error)) from None
    unknown_steps = sorted(set(step_search or {}) - set(STEP_SEARCH))
    if unknown_steps:
        raise ConfigError(f"unknown step search setting(s) {', '.join(unknown_steps)}; choose from "
                          f"{', '.join(sorted(STEP_SEARCH))}")
    unknown = sorted(set(gate or {}) - GATE_FIELDS)
    if unknown:
        raise ConfigError(f"unknown contribution gate setting(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(sorted(GATE_FIELDS))}")
    metric = utility_metric or DEFAULT_UTILITY_METRIC
    if metric == "task":
        if spec is None:
            raise ConfigError("utility_metric 'task' needs the task spec")
        metric = spec.metric
    return RoundRules(
        strategy=built.name,
        strategy_params=built.hyperparameters(),
        estimator=estimator,
        estimator_params=_with_signature_defaults(estimator, merged),
        utility_metric=metric,
        seed=seed,
        step_search=None if step_search is None else {**STEP_SEARCH, **step_search},
        **{"row_spread": ROW_SPREAD and metric in ROW_METRICS, **dict(gate or {})},
    )


def strategy_from_rules(rules: RoundRules) -> Strategy:
    """A fresh strategy object exactly as the rules configure it."""
    try:
        return make_strategy(rules.strategy, **dict(rules.strategy_params))
    except FedLedgerError as error:
        raise AggregatorError(f"the bounty's rules name a strategy this build cannot make: {error}") from None


def _with_signature_defaults(estimator: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` plus every keyword default of the estimator function that they do not set."""
    signature = inspect.signature(shapley.ESTIMATORS[estimator])
    out = {}
    for p in signature.parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _CALL_TIME:
            out[p.name] = p.default
    if "convergence_share" in params:  # the share stands for the tolerance (resolved when n is known)
        out.pop("convergence_tolerance", None)
    out.update(params)
    return out
