"""The one round computation: deterministic, order-free, and exactly what the scorer and the strategy give."""

import numpy as np
import pytest

from aggregator.rounds import RoundInputs, compute_round
from aggregator.rules import resolve_rules
from aggregator.scoring import score_round
from fedcore import codec
from fedcore.errors import AggregatorError
from fedcore.models import initial_weights
from fedcore.task import TaskSpec
from fedcore.types import Digest, Update
from node.training import train_local

SPEC = TaskSpec(name="rounds", model="logreg", feature_columns=("a", "b", "c"), label_column="y")


@pytest.fixture(scope="module")
def round_inputs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.float32)
    start = initial_weights(SPEC)
    updates = tuple(train_local(start, X[i::3], y[i::3], SPEC, seed=i, institution=f"inst{i}") for i in range(3))
    X_val = rng.normal(size=(40, 3)).astype(np.float32)
    y_val = (X_val @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.float32)
    return RoundInputs(round=2, global_weights=start, updates=updates, X_val=X_val, y_val=y_val)


def test_outcome_is_deterministic_and_independent_of_update_order(round_inputs):
    rules = resolve_rules(seed=5)
    first = compute_round(round_inputs, rules, SPEC)
    reordered = RoundInputs(**{**round_inputs.__dict__, "updates": tuple(reversed(round_inputs.updates))})
    second = compute_round(reordered, rules, SPEC)
    assert first.model_bytes == second.model_bytes and first.fixed_point == second.fixed_point
    assert first.model_hash == Digest.of(first.model_bytes) == Digest.of(codec.encode(first.weights))
    assert str(first.model_hash).startswith("0x") and len(str(first.model_hash)) == 66
    assert set(first.fixed_point) == {"inst0", "inst1", "inst2"} and first.used == ("inst0", "inst1", "inst2")


def test_scores_are_the_scorers_with_exactly_the_rules(round_inputs):
    rules = resolve_rules(seed=5, estimator="tmc")
    outcome = compute_round(round_inputs, rules, SPEC)
    direct = score_round(
        global_weights=round_inputs.global_weights,
        updates=round_inputs.updates, strategy_name="fedavg",
        strategy_params=None, strategy_state=None, spec=SPEC, X_val=round_inputs.X_val, y_val=round_inputs.y_val,
        estimator="tmc", seed=rules.round_seed(2), server_round=2,
    )
    assert outcome.fixed_point == direct.fixed_point
    # another seed under the same rules' estimator samples other permutations
    other = compute_round(round_inputs, resolve_rules(seed=6, estimator="tmc"), SPEC)
    assert other.model_bytes == outcome.model_bytes
    assert other.scores.reproducible_fields() != outcome.scores.reproducible_fields()


def test_stateful_strategies_carry_their_state_through_the_outcome(round_inputs):
    rules = resolve_rules(strategy="fedadam", strategy_params={"server_lr": 0.05})
    one = compute_round(round_inputs, rules, SPEC, score=False)
    assert one.scores is None and int(one.strategy_state["step"]) == 1
    two = compute_round(RoundInputs(**{**round_inputs.__dict__, "strategy_state": one.strategy_state}), rules, SPEC,
                        score=False)
    assert int(two.strategy_state["step"]) == 2 and two.model_bytes != one.model_bytes
    assert int(one.strategy_state["step"]) == 1  # the input state is not mutated


def test_no_updates_keeps_the_model_and_scores_nobody(round_inputs):
    empty = RoundInputs(round=1, global_weights=round_inputs.global_weights, updates=())
    outcome = compute_round(empty, resolve_rules(), SPEC)
    assert outcome.fixed_point == {} and outcome.scores is None
    assert outcome.model_bytes == codec.encode(round_inputs.global_weights)


def test_scoring_without_a_validation_set_is_refused(round_inputs):
    inputs = RoundInputs(round=1, global_weights=round_inputs.global_weights, updates=round_inputs.updates)
    with pytest.raises(AggregatorError):
        compute_round(inputs, resolve_rules(), SPEC)
    assert isinstance(round_inputs.updates[0], Update)
