"""The round computation: one pure function from a round's inputs and the bounty's rules to its outcome.

The coordinator, the auditor, the simulation (and so the benchmarks and the demo) all call
:func:`compute_round`; nobody else strings decode, strategy, aggregate, hash and score together. The
outcome is a deterministic function of (global model, updates with their sample counts, strategy state,
validation set, task spec, rules): the same inputs give the same model bytes and the same integer scores.

No participant's input can stall a round: the task's declared bounds (:class:`fedcore.task.DeclaredBounds`)
are applied first (:func:`bound_updates`), and an update that still makes the aggregate or the scores
non-computable (an overflow to Inf, a NaN) is left out with the reason recorded (:func:`compute_round`). The
round's contribution scores, taken on the admitted updates before the aggregate, then decide what enters it
(:mod:`aggregator.gate`: harmful updates and gated institutions are left out, still scored). Under the rules'
server step search the new model takes the step the scoring chose for the kept updates (:mod:`aggregator.stepsearch`).
All of it happens here, so the auditor's replay makes the same exclusions and the same step bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aggregator import gate
from aggregator.rules import strategy_from_rules
from aggregator.scoring import RoundScores, check_validation, coalition_utility, score_round
from aggregator.strategies import FitFailure, RoundAggregate, update_norm
from fedcore import codec
from fedcore.errors import AggregatorError, DataError
from fedcore.rules import RoundRules
from fedcore.task import DeclaredBounds, TaskSpec
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
        The round state before the round: the strategy's ``state_dict()`` and the contribution gate's record
        (keys ``gate/<institution>``, :mod:`aggregator.gate`); empty in round 1.
    X_val : np.ndarray, shape (m, d), optional
    y_val : np.ndarray, shape (m,), optional
        The sponsor's validation set (scaled with the task's scaler); required when scoring.
    groups_val : tuple of str, optional
        Each validation row's group (the task population's group column): the utility weights groups as the task
        declares (:mod:`fedcore.population`).
    failures : tuple of FitFailure
        Institutions that trained but delivered nothing usable (simulation); recorded as excluded.
    """

    round: int
    global_weights: Mapping[str, np.ndarray]
    updates: tuple[Update, ...]
    strategy_state: Mapping[str, np.ndarray] = field(default_factory=dict)
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    groups_val: tuple[str, ...] | None = None
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
        The round state after the round, strategy and gate record (the next round's input).
    used : tuple of str
        Institutions whose update entered the aggregate.
    excluded : dict[str, str]
        Institution -> why its admitted, scored update was left out of the aggregate: by the strategy, or by the
        contribution gate (reasons starting ``"harmful: "`` or ``"gated: "``, :mod:`aggregator.gate`).
    scores : RoundScores or None
        Contribution scores of every admitted update (None when not scored or when there was no update).
    metrics : dict[str, float]
        The strategy's aggregate metrics.
    hyperparameters : dict
        The strategy's settings as it ran.
    rejected : dict[str, str]
        Institution -> why its update was not admitted to the round at all (outside the task's bounds, or the
        round could not be computed with it); such an update is neither aggregated nor scored.
    clipped : dict[str, str]
        Institution -> how its update was scaled down to the task's norm (``norm_rule="clip"``).
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
    rejected: dict[str, str] = field(default_factory=dict)
    clipped: dict[str, str] = field(default_factory=dict)

    @property
    def fixed_point(self) -> dict[str, int]:
        """The on-chain scores (empty when nothing was scored)."""
        return dict(self.scores.fixed_point) if self.scores is not None else {}


def bound_updates(updates: tuple[Update, ...], bounds: DeclaredBounds
                  ) -> tuple[tuple[Update, ...], dict[str, str], dict[str, str]]:
    """Apply the task's declared bounds to a round's updates (pure).

    Parameters
    ----------
    updates : tuple of Update
    bounds : DeclaredBounds

    Returns
    -------
    (admitted, rejected, clipped)
        The updates the round goes on with (clipped ones scaled to ``bounds.max_update_norm`` in float32), and
        institution -> reason for each one refused or clipped.
    """
    admitted: list[Update] = []
    rejected: dict[str, str] = {}
    clipped: dict[str, str] = {}
    for u in updates:
        n = u.num_samples
        if (isinstance(n, bool) or not isinstance(n, int | np.integer)
                or not bounds.min_samples <= n <= bounds.max_samples):
            rejected[u.institution] = (f"declared {n} samples, outside the task's range "
                                       f"[{bounds.min_samples}, {bounds.max_samples}]")
            continue
        norm = update_norm(u.arrays)
        if norm > bounds.max_update_norm:
            if bounds.norm_rule == "refuse" or not math.isfinite(norm):
                rejected[u.institution] = f"update norm {norm:.6g} above the task's limit {bounds.max_update_norm:g}"
                continue
            factor = bounds.max_update_norm / norm
            u = Update(u.institution, {k: (np.asarray(a, dtype=np.float64) * factor).astype(np.float32)
                                       for k, a in u.arrays.items()}, int(n), u.metrics)
            clipped[u.institution] = f"update norm {norm:.6g} clipped to the task's limit {bounds.max_update_norm:g}"
        admitted.append(u)
    return tuple(admitted), rejected, clipped


def compute_round(inputs: RoundInputs, rules: RoundRules, spec: TaskSpec, *, score: bool = True) -> RoundOutcome:
    """Score a round's updates, leave out what the contribution gate refuses, and aggregate the rest.

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
        When scoring is asked without a validation set, or on malformed validation data.

    Notes
    -----
    Updates outside the task's bounds are left out first (:func:`bound_updates`). The scores of the others decide,
    with the gate's record carried in ``strategy_state``, which of them the strategy aggregates
    (:func:`aggregator.gate.decide`). If the aggregate or the scores
    still cannot be computed (non-finite aggregate, a numeric failure in scoring), the admitted update with the
    largest norm (ties: the larger institution id) is left out and the round is computed again, until it can be:
    the worst case is a round without updates, which keeps the global model.
    """
    global_weights = copy_arrays(inputs.global_weights)
    updates = tuple(sorted(inputs.updates, key=lambda u: u.institution))
    updates, rejected, clipped = bound_updates(updates, spec.bounds)
    state_before, record = gate.split_state({k: np.array(v, copy=True) for k, v in inputs.strategy_state.items()})
    if (score or rules.step_search is not None) and updates:
        # a bad validation set is the aggregator's fault, never a participant's: fail before
        check_validation(inputs.X_val, inputs.y_val)
    while True:
        strategy = strategy_from_rules(rules)
        strategy.load_state_dict({k: np.array(v, copy=True) for k, v in state_before.items()})
        try:
            scores, decision = _score_and_gate(inputs, rules, spec, global_weights, updates, state_before, record,
                                               score=score)
            kept = tuple(u for u in updates if u.institution not in decision.left_out)
            with np.errstate(over="ignore", invalid="ignore"):
                aggregate = strategy.aggregate_fit(inputs.round, global_weights, kept, inputs.failures)
                aggregate = _searched(aggregate, inputs, rules, spec, global_weights, kept, state_before)
            if not all(np.isfinite(a).all() for a in aggregate.weights.values()):
                raise AggregatorError("the aggregate is not finite")
            break
        except (AggregatorError, DataError, ArithmeticError) as exc:  # NaN/Inf in the aggregate or the predictions
            if not updates:
                raise
            worst = max(updates, key=lambda u: (update_norm(u.arrays), u.institution))
            rejected[worst.institution] = f"the round cannot be computed with this update ({exc})"
            updates = tuple(u for u in updates if u is not worst)
    model_bytes = codec.encode(aggregate.weights)
    return RoundOutcome(
        weights=aggregate.weights, model_bytes=model_bytes, model_hash=Digest.of(model_bytes),
        strategy_state=gate.join_state(strategy.state_dict(), decision.record), used=aggregate.used,
        excluded={**aggregate.excluded, **decision.left_out}, scores=scores, metrics=dict(aggregate.metrics),
        hyperparameters=strategy.hyperparameters(), rejected=rejected, clipped=clipped,
    )


def _searched(aggregate: RoundAggregate, inputs: RoundInputs, rules: RoundRules, spec: TaskSpec,
              global_weights: Arrays, kept: tuple[Update, ...], state_before: Arrays) -> RoundAggregate:
    """Under the rules' server step search, the aggregate moved to the step the scoring chose for the kept updates
    (the very model their coalition value ``v(kept)`` was taken on); otherwise the aggregate as it is."""
    if rules.step_search is None or not aggregate.used:
        return aggregate
    if inputs.X_val is None or inputs.y_val is None:
        raise AggregatorError("the rules' step search needs the validation set (X_val and y_val)")
    utility = coalition_utility(
        global_weights=global_weights, updates=kept, strategy_name=rules.strategy,
        strategy_params=rules.strategy_params, strategy_state=state_before or None, spec=spec, X_val=inputs.X_val,
        y_val=inputs.y_val, utility_metric=rules.utility_metric, server_round=inputs.round,
        groups_val=inputs.groups_val, step_search=rules.step_search)
    weights, choice = utility.model(frozenset(range(utility.n)))
    length = choice.length if choice is not None else 0.0
    return replace(aggregate, weights=weights, metrics={**aggregate.metrics, "step_length": length})


def _score_and_gate(inputs: RoundInputs, rules: RoundRules, spec: TaskSpec, global_weights: Arrays,
                    updates: tuple[Update, ...], state_before: Arrays, record: Mapping[str, int], *, score: bool
                    ) -> tuple[RoundScores | None, gate.GateDecision]:
    """Score the updates, let the gate leave out what it refuses, and score again what is kept, until the gate
    leaves out nothing new.

    An update is valued among the others of its round, and harmful updates can make each other look useful (averaging
    two noise updates halves the noise each brings), so a value is only final among updates that all enter the
    model. Each pass leaves out at least one more update, so there are at most as many passes as updates. Scores of
    what was left out come from the pass that left it out; :func:`aggregator.gate.on_chain_scores` makes the posted
    integers (left out: capped at 0; a round whose gain of what was kept is not positive: all capped at 0; negative
    within the spread: 0). The gate's record counts each institution once per round.
    """
    if not (score and updates):
        return None, gate.decide(None, record, rules)
    scores = last = _score(inputs, rules, spec, global_weights, updates, state_before)
    decision = gate.decide(scores, record, rules)
    left_out, out_record = dict(decision.left_out), {who: decision.record[who] for who in decision.left_out}
    kept = tuple(u for u in updates if u.institution not in left_out)
    while decision.left_out and kept:
        last = _score(inputs, rules, spec, global_weights, kept, state_before)
        decision = gate.decide(last, record, rules)
        left_out.update(decision.left_out)
        out_record.update({who: decision.record[who] for who in decision.left_out})
        scores = _merge_scores(scores, last)
        kept = tuple(u for u in kept if u.institution not in decision.left_out)
    final_record = {**{who: n for who, n in decision.record.items() if who not in left_out}, **out_record}
    # the loop ends when the last pass left nothing out (it valued exactly what is kept) or nothing is kept (gain 0)
    gain = last.total if kept else 0.0
    return gate.on_chain_scores(scores, left_out, rules, gain=gain), gate.GateDecision(left_out, final_record)


def _merge_scores(earlier: RoundScores, later: RoundScores) -> RoundScores:
    """``later``'s scores of the updates it valued, ``earlier``'s of the others (those a pass left out)."""
    def merged(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        both = {**a, **b}
        return {who: both[who] for who in sorted(both)}

    return replace(later, values=merged(earlier.values, later.values),
                   std_errors=merged(earlier.std_errors, later.std_errors),
                   row_std_errors=merged(earlier.row_std_errors, later.row_std_errors),
                   fixed_point=merged(earlier.fixed_point, later.fixed_point),
                   evaluations=earlier.evaluations + later.evaluations, seconds=earlier.seconds + later.seconds)


def _score(inputs: RoundInputs, rules: RoundRules, spec: TaskSpec, global_weights: Arrays,
           updates: tuple[Update, ...], state_before: Arrays) -> RoundScores:
    """The round's contribution scores of every admitted update, taken before the aggregate."""
    if inputs.X_val is None or inputs.y_val is None:
        raise AggregatorError("scoring a round needs the validation set (X_val and y_val)")
    return score_round(
        global_weights=global_weights,
        updates=updates,
        strategy_name=rules.strategy, strategy_params=rules.strategy_params, strategy_state=state_before or None,
        spec=spec, X_val=inputs.X_val, y_val=inputs.y_val, estimator=rules.estimator,
        estimator_params=rules.estimator_params, seed=rules.round_seed(inputs.round),
        utility_metric=rules.utility_metric, server_round=inputs.round, groups_val=inputs.groups_val,
        row_spread=rules.row_spread,
        step_search=rules.step_search,
    )
