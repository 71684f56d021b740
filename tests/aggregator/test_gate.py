"""The contribution gate: harmful updates stay out of the aggregate (still scored), repeat offenders are gated until
they deliver positive value again, and the record travels in the round state."""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import gate
from aggregator.rounds import RoundInputs, compute_round
from aggregator.rules import resolve_rules
from aggregator.scoring import RoundScores
from fedcore.errors import ConfigError
from fedcore.models import initial_weights
from fedcore.rules import RoundRules
from fedcore.task import TaskSpec
from fedcore.types import Update
from node.training import train_local

SPEC = TaskSpec(name="gate", model="logreg", feature_columns=("a", "b", "c"), label_column="y")


def _scores(values: dict[str, float], std: dict[str, float] | None = None,
            rows: dict[str, float] | None = None) -> RoundScores:
    std = std or dict.fromkeys(values, 0.0)
    return RoundScores(values=values, std_errors=std, fixed_point={k: int(v * 1e18) for k, v in values.items()},
                       evaluations=0, v_empty=0.0, v_grand=sum(values.values()), estimator="exact", seconds=0.0,
                       row_std_errors=rows or {})


def test_only_values_below_minus_the_spread_are_left_out():
    rules = resolve_rules(gate={"harm_spread": 2.0, "harm_margin": 0.001})
    scores = _scores({"a": 0.05, "b": -0.0009, "c": -0.02, "d": -0.02},
                     {"a": 0.01, "b": 0.0, "c": 0.01, "d": 0.005})
    decision = gate.decide(scores, {}, rules)
    # b is within the margin; c's -0.02 is within 2 x 0.01 + 0.001; d's is beyond 2 x 0.005 + 0.001
    assert set(decision.left_out) == {"d"}
    assert decision.left_out["d"].startswith("harmful: value -0.02 below -0.011")
    assert decision.record == {"d": 1}


def test_the_spread_combines_the_estimators_error_with_the_validation_rows_error():
    """sqrt(sampling**2 + rows**2): d's -0.02 is beyond 2 x 0.005 + 0.001 on sampling alone, but with a row error of
    0.01 its spread is 2 x sqrt(0.005**2 + 0.01**2) + 0.001 = 0.0234: not told apart from zero, kept and posted 0."""
    values, sampling, rows = {"a": 0.05, "d": -0.02}, {"a": 0.0, "d": 0.005}, {"a": 0.001, "d": 0.01}
    with_rows = resolve_rules(gate={"harm_margin": 0.001})
    without = resolve_rules(gate={"harm_margin": 0.001, "row_spread": False})
    scores = _scores(values, sampling, rows)
    assert gate.harm_spread(scores, "d", with_rows) == pytest.approx(2 * math.hypot(0.005, 0.01) + 0.001, rel=1e-12)
    assert gate.harm_spread(scores, "d", without) == pytest.approx(0.011, rel=1e-12)
    assert gate.decide(scores, {}, with_rows).left_out == {}
    assert set(gate.decide(scores, {}, without).left_out) == {"d"}
    assert gate.on_chain_scores(scores, {}, with_rows, gain=scores.total).fixed_point == {"a": 5 * 10**16, "d": 0}
    exact = _scores(values)  # an exact estimate (sampling error 0) with the rows' error still has a spread
    assert gate.harm_spread(replace(exact, row_std_errors=rows), "d", with_rows) > gate.harm_spread(exact, "d", with_rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(0, 0.5), st.floats(0, 0.5)), min_size=1, max_size=6))
def test_the_rows_spread_only_widens_doubt_and_never_pays_a_value_that_is_not_positive(players):
    """Property: adding the rows' error never leaves out an update that the sampling error alone kept, and, either
    way, nobody whose value is not positive gets a positive on-chain score."""
    names = [f"p{i}" for i in range(len(players))]
    scores = _scores({n: v for n, (v, _, _) in zip(names, players)}, {n: s for n, (_, s, _) in zip(names, players)},
                     {n: r for n, (_, _, r) in zip(names, players)})
    with_rows, without = resolve_rules(), resolve_rules(gate={"row_spread": False})
    wide, narrow = gate.decide(scores, {}, with_rows), gate.decide(scores, {}, without)
    assert set(wide.left_out) <= set(narrow.left_out)
    for rules, decision in ((with_rows, wide), (without, narrow)):
        posted = gate.on_chain_scores(scores, decision.left_out, rules, gain=scores.total).fixed_point
        assert all(posted[n] <= 0 for n in names if scores.values[n] <= 0)


def test_a_repeat_offender_is_gated_until_it_delivers_positive_value_beyond_the_spread():
    rules = resolve_rules(gate={"harm_margin": 0.001, "gate_after": 2})
    record: dict[str, int] = {}
    for _ in range(2):  # two harmful rounds in a row
        record = gate.decide(_scores({"a": 0.01, "x": -0.01}), record, rules).record
    assert record == {"x": 2}
    slightly_negative = gate.decide(_scores({"a": 0.01, "x": -0.0005}), record, rules)  # would pass ungated
    assert slightly_negative.left_out["x"].startswith("gated: left out of 2 consecutive rounds")
    positive_within = _scores({"a": 0.01, "x": 0.0009})  # positive, but not beyond the margin
    within = gate.decide(positive_within, slightly_negative.record, rules)
    assert "x" in within.left_out and within.record == {"x": 4}
    posted = gate.on_chain_scores(positive_within, within.left_out, rules, gain=positive_within.total)  # left out: posted as 0, earns nothing
    assert posted.fixed_point == {"a": 10**16, "x": 0} and posted.values == positive_within.values
    back = gate.decide(_scores({"a": 0.01, "x": 0.002}), within.record, rules)
    assert back.left_out == {} and back.record == {}
    absent = gate.decide(_scores({"a": 0.01}), {"x": 3}, rules)  # not in the round: the count stays
    assert absent.record == {"x": 3}


def test_the_gate_can_be_switched_off_and_its_settings_are_checked():
    rules = resolve_rules(gate={"exclude_harmful": False})
    assert gate.decide(_scores({"x": -1.0}), {}, rules).left_out == {}
    defaults = resolve_rules()
    assert (defaults.exclude_harmful, defaults.harm_spread, defaults.harm_margin, defaults.gate_after,
            defaults.zero_within_spread, defaults.pay_only_gain) == (True, 2.0, 1e-4, 2, True, True)
    with pytest.raises(ConfigError, match="unknown contribution gate setting"):
        resolve_rules(gate={"spread": 1.0})
    with pytest.raises(ConfigError, match="harm_margin must be a finite number >= 0"):
        RoundRules.from_dict({**defaults.to_dict(), "harm_margin": -1.0})
    with pytest.raises(ConfigError, match="gate_after must be a non-negative integer"):
        RoundRules.from_dict({**defaults.to_dict(), "gate_after": 1.5})
    with pytest.raises(ConfigError, match="zero_within_spread must be true or false"):
        RoundRules.from_dict({**defaults.to_dict(), "zero_within_spread": 1})
    assert RoundRules.from_dict(defaults.to_dict()) == defaults
    assert replace(defaults, gate_after=3).digest() != defaults.digest()  # part of the hashed rules
    assert replace(defaults, zero_within_spread=False).digest() != defaults.digest()
    assert replace(defaults, pay_only_gain=False).digest() != defaults.digest()
    with pytest.raises(ConfigError, match="pay_only_gain must be true or false"):
        RoundRules.from_dict({**defaults.to_dict(), "pay_only_gain": "yes"})


@pytest.mark.parametrize("gain", [-0.003, 0.0])
def test_a_round_without_gain_posts_no_positive_score_and_harm_as_it_is(gain):
    """The MLP demo's free rider: its zero update shrinks the others' harmful steps, so it scores positive in a round
    whose gain is negative. Nobody is paid for such a round; harm beyond its spread still goes on chain."""
    rules = resolve_rules(gate={"harm_margin": 0.001})
    scores = _scores({"rider": 0.015, "a": -0.0005, "b": -0.02})
    posted = gate.on_chain_scores(scores, {}, rules, gain=gain)
    assert posted.fixed_point == {"rider": 0, "a": 0, "b": -2 * 10**16} and posted.values == scores.values
    assert gate.on_chain_scores(scores, {}, rules, gain=1e-9).fixed_point["rider"] == 15 * 10**15
    paid = resolve_rules(gate={"harm_margin": 0.001, "pay_only_gain": False})
    assert gate.on_chain_scores(scores, {}, paid, gain=gain).fixed_point["rider"] == 15 * 10**15


def test_a_negative_value_within_its_spread_is_posted_as_zero_and_harm_beyond_it_as_it_is():
    rules = resolve_rules(gate={"harm_spread": 2.0, "harm_margin": 0.001})
    scores = _scores({"a": 0.05, "b": -0.0009, "c": -0.02, "d": -0.02, "e": 0.0005},
                     {"a": 0.01, "b": 0.0, "c": 0.01, "d": 0.005, "e": 0.01})
    left_out = gate.decide(scores, {}, rules).left_out
    posted = gate.on_chain_scores(scores, left_out, rules, gain=scores.total)
    # b within the margin and c within 2 x 0.01 + 0.001: 0 (no reputation lost); d beyond its spread: harm, posted;
    # a positive value is posted however small its margin (e)
    assert posted.fixed_point == {"a": 5 * 10**16, "b": 0, "c": 0, "d": -2 * 10**16, "e": 5 * 10**14}
    assert posted.values == scores.values and posted.std_errors == scores.std_errors
    assert set(left_out) == {"d"}
    # the same test as the gate's: a value exactly at -spread is not harm
    edge = _scores({"x": -0.001})
    assert gate.on_chain_scores(edge, {}, rules, gain=edge.total).fixed_point == {"x": 0}
    kept = resolve_rules(gate={"harm_margin": 0.001, "zero_within_spread": False})
    assert gate.on_chain_scores(scores, left_out, kept, gain=scores.total).fixed_point == scores.fixed_point
    off = resolve_rules(gate={"harm_margin": 0.001, "exclude_harmful": False})  # the gate off still judges doubt
    assert gate.on_chain_scores(scores, {}, off, gain=scores.total).fixed_point["b"] == 0


@pytest.fixture(scope="module")
def flipped_round():
    """Three honest institutions and one trained on flipped labels, from the initial model."""
    rng = np.random.default_rng(3)
    w = np.array([1.5, -1.0, 0.5])
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X @ w > 0).astype(np.float32)
    start = initial_weights(SPEC)
    updates = [train_local(start, X[i::4], y[i::4], SPEC, seed=i, institution=f"honest{i}") for i in range(3)]
    updates.append(train_local(start, X[3::4], 1.0 - y[3::4], SPEC, seed=3, institution="flipper"))
    X_val = rng.normal(size=(80, 3)).astype(np.float32)
    return RoundInputs(round=1, global_weights=start, updates=tuple(updates), X_val=X_val,
                       y_val=(X_val @ w > 0).astype(np.float32))


def test_compute_round_scores_the_flipper_and_aggregates_without_it(flipped_round):
    rules = resolve_rules(estimator="exact", seed=1)
    outcome = compute_round(flipped_round, rules, SPEC)
    assert outcome.excluded["flipper"].startswith(f"{gate.HARMFUL}: value ")
    assert outcome.used == ("honest0", "honest1", "honest2")
    assert outcome.fixed_point["flipper"] < 0 and set(outcome.fixed_point) == {"honest0", "honest1", "honest2",
                                                                               "flipper"}
    honest = RoundInputs(**{**flipped_round.__dict__, "updates": flipped_round.updates[:3]})
    assert outcome.model_bytes == compute_round(honest, rules, SPEC).model_bytes  # as if it had not come
    assert gate.split_state(outcome.strategy_state) == ({}, {"flipper": 1})
    off = compute_round(flipped_round, resolve_rules(estimator="exact", seed=1, gate={"exclude_harmful": False}), SPEC)
    assert "flipper" in off.used and off.model_bytes != outcome.model_bytes
    # the flipper's score is taken among every update; the kept ones are valued again among themselves only
    assert off.fixed_point["flipper"] == outcome.fixed_point["flipper"]
    alone = compute_round(honest, rules, SPEC).fixed_point
    assert {who: outcome.fixed_point[who] for who in alone} == alone


def test_noise_updates_that_make_each_other_look_useful_are_valued_again_without_each_other(flipped_round):
    """Three noise updates: averaging one with another halves its harm, so among the three one scores positive (seen
    with the gate off). The gate leaves out the clearly harmful two, values what is kept again among itself, and so
    leaves out the third too: none is credited and none enters the model. (Under the margin alone: with the spread
    over these 80 validation rows, the third's harm, -0.218 +- 0.111, is within 2 standard errors.)"""
    rng = np.random.default_rng(1)
    base = flipped_round.updates[0].arrays
    bots = tuple(Update(f"bot{i}", {k: rng.normal(0, 5, v.shape).astype(v.dtype) for k, v in base.items()}, 50)
                 for i in range(3))
    inputs = replace(flipped_round, updates=(*flipped_round.updates[:3], *bots))
    off = compute_round(inputs, resolve_rules(estimator="exact", seed=1, gate={"exclude_harmful": False}), SPEC)
    assert any(off.scores.values[b.institution] > 0 for b in bots)  # one bot looks useful among the others
    outcome = compute_round(inputs, resolve_rules(estimator="exact", seed=1, gate={"row_spread": False}), SPEC)
    assert all(outcome.fixed_point[b.institution] <= 0 and b.institution in outcome.excluded for b in bots)
    assert outcome.used == ("honest0", "honest1", "honest2")
    assert gate.split_state(outcome.strategy_state)[1] == {b.institution: 1 for b in bots}


def test_the_record_carries_through_the_round_state_and_gates_later_rounds(flipped_round):
    rules = resolve_rules(estimator="exact", seed=1, strategy="fedadam", strategy_params={"server_lr": 0.05},
                          gate={"gate_after": 1})
    first = compute_round(flipped_round, rules, SPEC)
    assert int(first.strategy_state["step"]) == 1 and int(first.strategy_state["gate/flipper"]) == 1
    # round 2: the flipper is gated after one harmful round: its update is left out as gated, not as harmful
    backwards = Update("flipper", {k: -3 * v for k, v in flipped_round.updates[0].arrays.items()}, 50)
    second = compute_round(replace(flipped_round, round=2, global_weights=first.weights,
                                   updates=(*flipped_round.updates[:3], backwards),
                                   strategy_state=first.strategy_state), rules, SPEC)
    assert int(second.strategy_state["step"]) == 2 and second.used == ("honest0", "honest1", "honest2")
    assert second.excluded["flipper"].startswith(f"{gate.GATED}: left out of 1 consecutive rounds")
    assert int(second.strategy_state["gate/flipper"]) == 2


def test_compute_round_posts_a_slightly_harmful_update_as_zero_and_keeps_it_in_the_model(flipped_round):
    """A small step backwards (-0.002 x an honest update, which also dilutes the average): its exact value is negative
    but within a margin of 0.01. It stays in the aggregate (not harm told apart from zero) and goes on chain as 0, so
    it moves no reputation; with ``zero_within_spread`` off the same round posts its negative value. The flipper's harm,
    beyond the margin, is posted either way."""
    backwards = Update("timid", {k: -0.002 * v for k, v in flipped_round.updates[0].arrays.items()}, 50)
    inputs = replace(flipped_round, updates=(*flipped_round.updates, backwards))
    margin_only = {"harm_margin": 0.01, "row_spread": False}  # the margin's semantics (the rows' spread: below)
    outcome = compute_round(inputs, resolve_rules(estimator="exact", seed=1, gate=margin_only), SPEC)
    assert -0.01 <= outcome.scores.values["timid"] < 0 and "timid" in outcome.used
    assert outcome.fixed_point["timid"] == 0 and outcome.fixed_point["flipper"] < 0
    plain = compute_round(inputs, resolve_rules(estimator="exact", seed=1,
                                                gate={**margin_only, "zero_within_spread": False}), SPEC)
    assert plain.fixed_point["timid"] < 0 and plain.model_bytes == outcome.model_bytes
    assert {k: v for k, v in plain.fixed_point.items() if k != "timid"} == {
        k: v for k, v in outcome.fixed_point.items() if k != "timid"}


def test_compute_round_pays_nobody_for_a_round_whose_kept_updates_lose_value(flipped_round):
    """A small step backwards (kept: within a margin of 0.01) and a zero update: the zero update halves the step, so
    its exact value is positive while the round's gain v(kept) - v(empty) is negative. Nothing is posted positive;
    with ``pay_only_gain`` off the zero update would be paid."""
    start = flipped_round.global_weights
    backwards = Update("mover", {k: -0.05 * v for k, v in flipped_round.updates[0].arrays.items()}, 50)
    rider = Update("rider", {k: np.zeros_like(v) for k, v in start.items()}, 50)
    inputs = replace(flipped_round, updates=(backwards, rider))
    outcome = compute_round(inputs, resolve_rules(estimator="exact", seed=1, gate={"harm_margin": 0.01}), SPEC)
    assert outcome.used == ("mover", "rider") and outcome.scores.total < 0 < outcome.scores.values["rider"]
    assert outcome.fixed_point == {"mover": 0, "rider": 0}
    paid = compute_round(inputs, resolve_rules(estimator="exact", seed=1,
                                               gate={"harm_margin": 0.01, "pay_only_gain": False}), SPEC)
    assert paid.fixed_point["rider"] > 0 and paid.model_bytes == outcome.model_bytes
