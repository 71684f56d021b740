"""The server step search (aggregator/stepsearch.py): a zero update is worth nothing even when the others overshoot."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aggregator.rounds import RoundInputs, compute_round
from aggregator.rules import resolve_rules
from aggregator.stepsearch import direction, search_step, step_along, step_lengths
from fedcore.errors import AggregatorError, ConfigError
from fedcore.rules import STEP_SEARCH, RoundRules
from fedsets.data import default_data_root

HEART = pytest.mark.skipif(not (default_data_root() / "fed-heart-disease").is_dir(),
                           reason="Fed-Heart-Disease raw files not present")


def test_the_grid_is_zero_then_a_log_ladder_up_to_the_multiple_of_the_scale():
    lengths = step_lengths(3.0, max_multiplier=2.0, octaves=4, per_octave=2)
    assert lengths[0] == 0.0 and lengths[-1] == 6.0 and len(lengths) == 4 * 2 + 2
    assert np.all(np.diff(lengths) > 0)
    np.testing.assert_allclose(lengths[2:] / lengths[1:-1], math.sqrt(2.0))
    assert step_lengths(0.0, max_multiplier=2.0, octaves=4, per_octave=2).tolist() == [0.0]


def test_the_search_finds_the_maximum_between_grid_points_and_counts_its_evaluations():
    calls: list[float] = []

    def objective(t: float) -> float:
        calls.append(t)
        return -(t - 0.37) ** 2

    lengths = step_lengths(1.0, max_multiplier=2.0, octaves=10, per_octave=2)
    choice = search_step(objective, lengths, refinements=12)
    assert abs(choice.length - 0.37) < 2e-3 and choice.value == objective(choice.length)
    assert choice.evaluations == len(calls) - 1 == len(lengths) + 12 + 1
    coarse = search_step(lambda t: -(t - 0.37) ** 2, lengths, refinements=0)
    assert coarse.length in lengths and abs(coarse.length - 0.37) > abs(choice.length - 0.37)


def test_ties_keep_the_shorter_step():
    lengths = step_lengths(1.0, max_multiplier=2.0, octaves=3, per_octave=1)
    assert search_step(lambda t: 1.0, lengths, refinements=5).length == 0.0
    assert search_step(lambda t: min(t, 0.5), lengths, refinements=0).length == 0.5


def test_values_within_one_quantum_of_the_tolerance_are_a_tie_and_keep_the_shorter_step():
    lengths = step_lengths(1.0, max_multiplier=2.0, octaves=3, per_octave=1)
    rising = lambda t: 0.500003 + 1e-9 * t  # noqa: E731 - a gain far below any rule's resolution
    assert search_step(rising, lengths, refinements=3, tolerance=1e-5).length == 0.0
    assert search_step(rising, lengths, refinements=3).length == lengths[-1]  # compared exactly, the noise decides
    with pytest.raises(AggregatorError, match="tolerance must be finite and >= 0"):
        search_step(rising, lengths, refinements=0, tolerance=-1e-5)


def test_a_near_tie_that_float_noise_flips_when_compared_exactly_holds_when_compared_quantized():
    """Two grid points 1e-10 apart, as another CPU's summation order could reorder them: exact comparison follows the
    noise, quantized comparison does not (both values lie in one quantum, far from its boundaries)."""
    lengths = step_lengths(1.0, max_multiplier=2.0, octaves=3, per_octave=1)
    near, far = float(lengths[2]), float(lengths[3])

    def objective(noise: float):
        return lambda t: {near: 0.300004, far: 0.300004 + noise}.get(t, 0.100005)

    exact = {search_step(objective(noise), lengths, refinements=0).length for noise in (1e-10, -1e-10)}
    quantized = {search_step(objective(noise), lengths, refinements=0, tolerance=1e-5) for noise in (1e-10, -1e-10)}
    assert exact == {near, far}
    assert len({c.length for c in quantized}) == 1 and {c.length for c in quantized} == {near}
    assert all(c.margin == pytest.approx(4e-6, abs=1e-9) for c in quantized)


def test_noise_below_the_margin_never_changes_the_choice():
    """The margin's promise, on random smooth objectives: a perturbation of every value by less than the margin
    evaluates the same points and picks the same step."""
    rng = np.random.default_rng(0)
    lengths = step_lengths(1.0, max_multiplier=2.0, octaves=10, per_octave=2)
    for _ in range(50):
        peak, curve = rng.uniform(0, 2), rng.uniform(1e-5, 1e-2)
        calls: list[float] = []

        def objective(t: float, peak=peak, curve=curve, calls=calls) -> float:
            calls.append(t)
            return -curve * (t - peak) ** 2

        choice = search_step(objective, lengths, refinements=6, tolerance=1e-5)
        seen = list(calls)
        noise = rng.uniform(-1.0, 1.0, size=len(seen)) * choice.margin * 0.99
        shifted = dict(zip(seen, noise, strict=True))
        again = search_step(lambda t, p=peak, c=curve, s=shifted: -c * (t - p) ** 2 + s[t], lengths, refinements=6,
                            tolerance=1e-5)
        assert again.length == choice.length and again.evaluations == choice.evaluations


def test_a_rescaled_step_points_the_same_way():
    w = {"a": np.array([1.0, 2.0], dtype=np.float32)}
    unit, norm = direction(w, {"a": np.array([4.0, 6.0], dtype=np.float32)})
    half, half_norm = direction(w, {"a": np.array([2.5, 4.0], dtype=np.float32)})
    assert norm == 5.0 and half_norm == 2.5 and np.array_equal(unit["a"], half["a"])
    np.testing.assert_array_equal(step_along(w, unit, 5.0)["a"], [4.0, 6.0])


def test_the_settings_are_hashed_rules_checked_once():
    off = resolve_rules()
    on = resolve_rules(step_search={})
    assert off.step_search is None and on.step_search == dict(STEP_SEARCH)
    assert off.digest() != on.digest() != resolve_rules(step_search={"refinements": 3}).digest()
    assert RoundRules.from_dict(on.to_dict()) == on
    with pytest.raises(ConfigError, match="unknown step search setting"):
        resolve_rules(step_search={"grid": 3})
    with pytest.raises(ConfigError, match="max_multiplier must be a finite number > 0"):
        replace(on, step_search={**on.step_search, "max_multiplier": 0})
    with pytest.raises(ConfigError, match="per_octave must be an integer"):
        RoundRules.from_dict({**on.to_dict(), "step_search": {**on.step_search, "per_octave": 0}})
    with pytest.raises(ConfigError, match="tolerance must be a finite number >= 0"):
        RoundRules.from_dict({**on.to_dict(), "step_search": {**on.step_search, "tolerance": -1e-5}})
    assert resolve_rules(step_search={"tolerance": 0}).digest() != on.digest()


@pytest.fixture(scope="module")
def overshooting_round(tmp_path_factory):
    """Round 4 of the MLP federation (``fedledger demo --model mlp --seed 2 --free-rider cleveland``'s, without the
    search): Cleveland sends a zero update claiming its 149 rows; the honest updates (100 local SGD steps at lr
    0.03) overshoot, so under plain FedAvg the zero update, which shortens their step, is valued above 0."""
    from bench.fairness import _deliveries_of, heart_case
    from fedledger.datasets import write_heart
    from fedledger.simulation import Institution, run_simulation

    seed, data = 2, tmp_path_factory.mktemp("heart-mlp")
    write_heart(Path(data), seed=seed, model="mlp")
    case = heart_case(seed, Path(data), free_rider="cleveland")
    spec = case.spec.with_training(seed=seed)
    plain = resolve_rules(spec=spec, seed=seed)
    run = run_simulation([Institution(s.name, s.X, s.y) for s in case.sites], spec, plain, rounds=4, seed=seed,
                         validation=case.validation, validation_groups=case.groups,
                         transform_update=_deliveries_of(case.sites))
    last = run.rounds[-1]
    inputs = RoundInputs(last.round, last.global_weights, last.updates, {}, case.validation[0], case.validation[1],
                         case.groups)
    return inputs, spec, plain


@HEART
def test_a_zero_update_is_worth_nothing_when_the_others_overshoot(overshooting_round):
    inputs, spec, plain = overshooting_round
    without = compute_round(inputs, plain, spec)
    assert without.scores.values["cleveland"] > 0.005  # the damping the search removes: paid under plain FedAvg
    searched = compute_round(inputs, replace(plain, step_search=dict(STEP_SEARCH)), spec)
    assert abs(searched.scores.values["cleveland"]) < 1e-6  # float rounding of the rescaled aggregate
    assert searched.fixed_point["cleveland"] == 0
    assert all(searched.scores.values[name] != 0 for name in ("hungarian", "switzerland", "va"))


@HEART
def test_the_round_takes_the_step_its_value_was_taken_on_with_or_without_the_zero_update(overshooting_round):
    inputs, spec, plain = overshooting_round
    rules = replace(plain, step_search=dict(STEP_SEARCH), exclude_harmful=False)
    outcome = compute_round(inputs, rules, spec)
    assert outcome.metrics["step_length"] > 0 and "cleveland" in outcome.used
    honest_only = compute_round(replace(inputs, updates=tuple(u for u in inputs.updates
                                                              if u.institution != "cleveland")), rules, spec)
    assert math.isclose(outcome.scores.v_grand, honest_only.scores.v_grand, abs_tol=1e-6)
    for name, array in outcome.weights.items():
        np.testing.assert_allclose(array, honest_only.weights[name], atol=1e-5)
    assert compute_round(inputs, rules, spec).model_hash == outcome.model_hash  # deterministic, bit for bit


@HEART
def test_an_update_that_cancels_the_others_is_told_apart_not_truncated_away(overshooting_round):
    """Under the search an update that turns the grand coalition's direction uphill makes the round's gain exactly 0;
    GTG's round truncation would then zero every value, so nobody would be left out and the model would not move for
    as long as the canceller went on (a stall). Such a round is valued without the truncation."""
    from fedcore.types import Update

    inputs, spec, plain = overshooting_round
    (honest,) = [u for u in inputs.updates if u.institution == "hungarian"]
    canceller = Update("mallory", {k: -2.0 * a for k, a in honest.arrays.items()}, honest.num_samples, {})
    # The rows' spread off: here the honest value (+0.0034) is itself within 2 row standard errors (0.0047 each), so
    # with it nobody is told apart and the round pays nobody (see the README's Incentives on this stall).
    rules = replace(plain, step_search=dict(STEP_SEARCH), row_spread=False)
    outcome = compute_round(replace(inputs, updates=(honest, canceller)), rules, spec)
    first = outcome.scores
    assert outcome.excluded.keys() == {"mallory"} and outcome.used == ("hungarian",)
    assert first.values["mallory"] < 0 < first.values["hungarian"] and outcome.fixed_point["hungarian"] > 0
    assert outcome.metrics["step_length"] > 0  # the model moves along the honest update
    assert rules.estimator == "gtg" and rules.estimator_params["round_truncation_threshold"] > 0
