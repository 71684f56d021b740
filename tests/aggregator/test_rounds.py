"""The one round computation: deterministic, order-free, and exactly what the scorer and the strategy give."""

from dataclasses import replace

import numpy as np
import pytest

from aggregator.rounds import RoundInputs, compute_round
from aggregator.rules import resolve_rules
from aggregator.scoring import score_round
from fedcore import codec
from fedcore.errors import AggregatorError, ConfigError
from fedcore.models import initial_weights
from fedcore.task import DeclaredBounds, TaskSpec, task_hash
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


# -- declared numbers: the task's bounds, and inputs the round cannot be computed with -------------------------
def _attacker(round_inputs, value: float, samples: int) -> Update:
    return Update("mallory", {k: np.full_like(v, value) for k, v in round_inputs.global_weights.items()}, samples)


def _with(round_inputs, *extra: Update) -> RoundInputs:
    return RoundInputs(**{**round_inputs.__dict__, "updates": round_inputs.updates + extra})


@pytest.mark.parametrize("samples", [0, 2**62, 2**63, 2**256 - 1])
def test_a_sample_count_outside_the_tasks_range_is_excluded_and_moves_nothing(round_inputs, samples):
    rules = resolve_rules(seed=5)
    honest = compute_round(round_inputs, rules, SPEC)
    attacked = compute_round(_with(round_inputs, _attacker(round_inputs, 50.0, samples)), rules, SPEC)
    assert attacked.rejected == {"mallory": f"declared {samples} samples, outside the task's range [1, 1000000]"}
    assert attacked.model_bytes == honest.model_bytes and attacked.fixed_point == honest.fixed_point


def test_an_update_above_the_tasks_norm_is_refused_or_clipped(round_inputs):
    rules = resolve_rules(seed=5)
    honest = compute_round(round_inputs, rules, SPEC)
    huge = _attacker(round_inputs, 3.4e38, 10)
    refused = compute_round(_with(round_inputs, huge), rules, SPEC)
    assert refused.rejected == {"mallory": "update norm 6.8e+38 above the task's limit 10000"}
    assert refused.model_bytes == honest.model_bytes and refused.fixed_point == honest.fixed_point

    clipping = replace(SPEC, bounds=DeclaredBounds(max_update_norm=1.0, norm_rule="clip"))
    clipped = compute_round(_with(round_inputs, _attacker(round_inputs, 50.0, 10)), rules, clipping)
    assert clipped.rejected == {} and "clipped to the task's limit 1" in clipped.clipped["mallory"]
    assert "mallory" in clipped.fixed_point  # admitted, scored, and its pull on the model is bounded
    moved = codec.decode(clipped.model_bytes)["linear.weight"] - round_inputs.global_weights["linear.weight"]
    assert np.abs(moved).max() < 1.0


def test_an_update_that_overflows_the_aggregate_is_left_out_and_the_round_goes_on(round_inputs):
    """Within a (too) generous norm bound, 3.4e38 in every weight still overflows FedAvg: the round leaves it out."""
    rules = resolve_rules(seed=5)
    loose = replace(SPEC, bounds=DeclaredBounds(max_update_norm=1e300))
    honest = compute_round(round_inputs, rules, loose)
    twins = (_attacker(round_inputs, 3.4e38, 10), replace(_attacker(round_inputs, 3.4e38, 10), institution="trudy"))
    attacked = compute_round(_with(round_inputs, *twins), rules, loose)
    assert set(attacked.rejected) == {"mallory", "trudy"}
    assert all("the round cannot be computed with this update" in r for r in attacked.rejected.values())
    assert attacked.model_bytes == honest.model_bytes and attacked.fixed_point == honest.fixed_point
    again = compute_round(_with(round_inputs, *reversed(twins)), rules, loose)  # what an auditor replays
    assert again.rejected == attacked.rejected and again.model_bytes == attacked.model_bytes


def test_declared_bounds_are_part_of_the_task_and_checked():
    spec = replace(SPEC, bounds=DeclaredBounds(min_samples=5, max_samples=500, max_update_norm=3, norm_rule="clip"))
    assert TaskSpec.from_json(spec.to_json()) == spec and task_hash(spec) != task_hash(SPEC)
    for bad in ({"min_samples": 0}, {"max_samples": 2**63}, {"min_samples": 9, "max_samples": 8},
                {"max_update_norm": float("inf")}, {"norm_rule": "ignore"}):
        with pytest.raises(ConfigError, match="bounds"):
            DeclaredBounds(**bad)
