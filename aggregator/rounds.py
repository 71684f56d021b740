"""The round computation: one pure function from a round's inputs and the bounty's rules to its outcome.

The coordinator, the auditor, the simulation (and so the benchmarks and the demo) all call
:func:`compute_round`; nobody else strings decode, strategy, aggregate, hash and score together. The
outcome is a deterministic function of (global model, updates with their sample counts, strategy state,
validation set, task spec, rules): the same inputs give the same model bytes and the same integer scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from aggregator.rules import strategy_from_rules
from aggregator.scoring import RoundScores, score_round
from aggregator.strategies import FitFailure
from fedcore import codec
from fedcore.errors import AggregatorError
from fedcore.rules import RoundRules
from fedcore.task import TaskSpec
from fedcore.types import Arrays, Digest, Update, copy_arrays


@dataclass(frozen=True)
class RoundInputs:
    """What a round is computed from.

    Attributes
    ----------
    round : int
        1-based round number (its scoring seed follows from the rules).
    global_weights : Mapping[str, np.ndarray]
        The model every institution trained from.
    updates : tuple of Update
        The usable updates: committed, matching their commitment, decoded. Their order does not matter.
    strategy_state : Mapping[str, np.ndarray]
        The strategy's ``state_dict()`` before the round (empty for stateless strategies and round 1).
    X_val : np.ndarray, shape (m, d), optional
    y_val : np.ndarray, shape (m,), optional
        The sponsor's validation set; required when scoring.
    failures : tuple of FitFailure
        Institutions that trained but delivered nothing usable (simulation); recorded as excluded.
    """

    round: int
    global_weights: Mapping[str, np.ndarray]
    updates: tuple[Update, ...]
    strategy_state: Mapping[str, np.ndarray] = field(default_factory=dict)
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    failures: tuple[FitFailure, ...] = ()


@dataclass(frozen=True)
class RoundOutcome:
    """What a round produced.

    Attributes
    ----------
    weights : dict[str, np.ndarray]
        The new global model.
    model_bytes : bytes
        Its canonical safetensors encoding (what is served and hashed).
    model_hash : Digest
        ``sha256(model_bytes)``: what ``finalizeRound`` posts.
    strategy_state : dict[str, np.ndarray]
        The strategy's state after the round (the next round's input).
    used : tuple of str
        Institutions whose update entered the aggregate.
    excluded : dict[str, str]
        Institution -> why the strategy left its update out.
    scores : RoundScores or None
        Contribution scores of every input update (None when not scored or when there was no update).
    metrics : dict[str, float]
        The strategy's aggregate metrics.
    hyperparameters : dict
        The strategy's settings as it ran.
    """

    weights: Arrays
    model_bytes: bytes
    model_hash: Digest
    strategy_state: Arrays
    used: tuple[str, ...]
    excluded: dict[str, str]
    scores: RoundScores | None
    metrics: dict[str, float]
    hyperparameters: dict

    @property
    def fixed_point(self) -> dict[str, int]:
        """The on-chain scores (empty when nothing was scored)."""
        return dict(self.scores.fixed_point) if self.scores is not None else {}


def compute_round(inputs: RoundInputs, rules: RoundRules, spec: TaskSpec, *, score: bool = True) -> RoundOutcome:
    """Aggregate a round's updates with the rules' strategy and score each of them.

    Parameters
    ----------
    inputs : RoundInputs
    rules : RoundRules
        The bounty's resolved rules (strategy, estimator, utility metric, seed).
    spec : TaskSpec
        The task (model architecture).
    score : bool
        False skips contribution scoring (benchmarks of the learning alone).

    Returns
    -------
    RoundOutcome

    Raises
    ------
    AggregatorError
        When scoring is asked without a validation set, or on malformed updates or validation data.
    """
    global_weights = copy_arrays(inputs.global_weights)
    updates = tuple(sorted(inputs.updates, key=lambda u: u.institution))
    state_before = {k: np.array(v, copy=True) for k, v in inputs.strategy_state.items()}
    strategy = strategy_from_rules(rules)
    strategy.load_state_dict({k: np.array(v, copy=True) for k, v in state_before.items()})
    aggregate = strategy.aggregate_fit(inputs.round, global_weights, updates, inputs.failures)
    model_bytes = codec.encode(aggregate.weights)
    scores = None
    if score and updates:
        if inputs.X_val is None or inputs.y_val is None:
            raise AggregatorError("scoring a round needs the validation set (X_val and y_val)")
        scores = score_round(
            global_weights=global_weights,
            updates=updates,
            strategy_name=rules.strategy, strategy_params=rules.strategy_params, strategy_state=state_before or None,
            spec=spec, X_val=inputs.X_val, y_val=inputs.y_val, estimator=rules.estimator,
            estimator_params=rules.estimator_params, seed=rules.round_seed(inputs.round),
            utility_metric=rules.utility_metric, server_round=inputs.round,
        )
    return RoundOutcome(
        weights=aggregate.weights, model_bytes=model_bytes, model_hash=Digest.of(model_bytes),
        strategy_state=strategy.state_dict(), used=aggregate.used, excluded=dict(aggregate.excluded), scores=scores,
        metrics=dict(aggregate.metrics), hyperparameters=strategy.hyperparameters(),
    )
