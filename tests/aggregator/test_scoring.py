"""Round-level contribution scoring (aggregator/scoring.py) on real federated rounds.

Every behavioural test trains for real: Fed-Heart-Disease's pooled training parts (the test parts are
never read), 25% carved off as the validation set the utility scores on, the rest dealt to
institutions with node/partition.py, a logistic regression trained by FedAvg for a few rounds of few
local steps, scored with the module's defaults (GTG, validation log loss).

Each property is checked on several federation seeds, not one picked to pass. The orderings by label
noise and by quantity are properties of the mean over federations (in one federation of 72-row
institutions, neighbours 10 points of noise apart can swap, under exact Shapley too), so those tests
average over seeds 0-4 and check only the extremes per seed. Checked beyond the suite: both mean
orderings also hold on seeds 5-9 and 10-14, and the per-seed extremes on all of seeds 0-14; the
free-rider, noise-update and twin tests pass on seeds 0-9.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from aggregator import scoring
from aggregator.rules import resolve_rules
from aggregator.scoring import (
    DEFAULT_ESTIMATOR,
    DEFAULT_ESTIMATOR_PARAMS,
    DEFAULT_UTILITY_METRIC,
    RoundScores,
    coalition_utility,
    estimator_settings,
    score_round,
)
from aggregator.shapley import (
    ESTIMATORS,
    cumulative_values,
    exact_shapley,
    from_fixed_point,
    make_estimator,
)
from aggregator.strategies import make_strategy
from fedcore import metrics as fm
from fedcore.errors import AggregatorError, FedLedgerError
from fedcore.models import predict_with_weights
from fedcore.rules import SCORE_DECIMALS, SCORE_QUANTUM
from fedcore.task import TaskSpec, TrainingSettings
from fedcore.types import Update
from fedledger.simulation import Institution, run_simulation
from fedsets.data import carve_validation, pool_sites
from fedsets.heart import load_fed_heart_disease
from node.partition import iid_partition, perturb_institutions, split_by_partition

SEEDS = (0, 1, 2)
AVERAGED_SEEDS = (0, 1, 2, 3, 4)
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "shapley.json"


# --------------------------------------------------------------------------------------------------
# Real data, real training
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    """Pooled training parts of the 4 centers: 364 training rows and 122 validation rows."""
    return carve_validation(pool_sites(load_fed_heart_disease()), fraction=0.25, seed=0)


def make_spec(data, **training) -> TaskSpec:
    settings = {"local_steps": 25, "batch_size": 4, "lr": 0.03, "optimizer": "sgd", **training}
    if settings.get("local_epochs") is not None:
        settings["local_steps"] = None
    return TaskSpec(
        name="fed-heart-disease-scoring-tests",
        model="logreg",
        feature_columns=data.feature_names,
        label_column="num",
        metric="accuracy",
        training=TrainingSettings(**settings),
    )


def iid_institutions(data, n, seed, *, prefix="inst", label_noise=None):
    parts = iid_partition(data.n_train, n, seed=seed)
    datasets = split_by_partition(data.X_train, data.y_train, parts)
    if label_noise is not None:
        datasets = perturb_institutions(datasets, label_noise=label_noise, seed=seed)
    return [Institution(f"{prefix}{k}", X, y) for k, (X, y) in enumerate(datasets)]


def simulate(institutions, spec, *, seed, rounds=3, strategy="fedavg", transform=None, on_round=None, **strategy_params):
    return run_simulation(
        institutions,
        spec,
        resolve_rules(strategy=strategy, strategy_params=strategy_params),
        rounds=rounds,
        seed=seed,
        evaluate_every_round=False,
        transform_update=transform,
        on_round=on_round,
    )


def updates_of(record):
    return list(record.updates)


def score(record, spec, data, *, seed=0, estimator=DEFAULT_ESTIMATOR, estimator_params=None, strategy="fedavg",
          strategy_params=None, strategy_state=None, **kwargs) -> RoundScores:
    return score_round(
        global_weights=record.global_weights,
        updates=updates_of(record),
        strategy_name=strategy,
        strategy_params=strategy_params,
        strategy_state=strategy_state,
        spec=spec,
        X_val=data.X_test,
        y_val=data.y_test,
        estimator=estimator,
        estimator_params=estimator_params,
        seed=seed,
        **kwargs,
    )


def cumulative(result, spec, data, **kwargs) -> dict[str, float]:
    """Each institution's value summed over the run's rounds (estimator seed = round index)."""
    return cumulative_values([score(r, spec, data, seed=i, **kwargs).values for i, r in enumerate(result.rounds)])


def norm(arrays) -> float:
    return math.sqrt(sum(float(np.sum(np.asarray(a, dtype=np.float64) ** 2)) for a in arrays.values()))


# --------------------------------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_institutions_with_identical_data_get_equal_values(data, seed):
    spec = make_spec(data)
    others = iid_institutions(data, 3, seed)
    twin = others[0]
    institutions = [*others, Institution("twin", twin.X_train, twin.y_train)]  # the same rows, its own shuffles
    for index, record in enumerate(simulate(institutions, spec, seed=seed).rounds):
        result = score(record, spec, data, seed=index)
        a, b = result.values["inst0"], result.values["twin"]
        standard_error = math.hypot(result.std_errors["inst0"], result.std_errors["twin"])
        assert standard_error > 0  # a sampling estimator, with its spread
        assert abs(a - b) <= 2 * standard_error, (a, b, standard_error)


def test_identical_data_and_training_give_identical_exact_values(data):
    """Full-batch training makes the twins' updates equal (up to the order of a float sum), so exact
    Shapley must give them equal values (the symmetry axiom) on a real round."""
    spec = make_spec(data, batch_size=128, lr=0.3, local_steps=10)
    others = iid_institutions(data, 3, 7)
    institutions = [*others, Institution("twin", others[0].X_train, others[0].y_train)]
    for record in simulate(institutions, spec, seed=7).rounds:
        exact = score(record, spec, data, estimator="exact")
        assert abs(exact.values["inst0"] - exact.values["twin"]) <= 1e-4 * abs(exact.total)
        assert abs(exact.values["inst0"] - exact.values["inst1"]) > 1e-2 * abs(exact.total)  # others differ


def free_rider(who: str, claimed: str):
    """A simulation transform: ``who`` sends a zero update (the global model back), claiming its real sample count
    (``"real"``) or one sample (``"one"``)."""
    def free_ride(round_index, name, local):
        if name != who:
            return local
        count = local.num_samples if claimed == "real" else 1
        return Update(local.institution, {k: np.zeros_like(v) for k, v in local.arrays.items()}, count, {})

    return free_ride


@pytest.mark.parametrize("seed", SEEDS)
def test_free_rider_gets_at_most_epsilon_and_about_zero_without_weight(data, seed):
    """A zero update (the global model sent back). Under sample-weighted FedAvg it is a null player
    only if its claimed weight is negligible; with a real sample count it shrinks every coalition's
    step, which costs validation loss here, so it scores below zero: never paid either way."""
    spec = make_spec(data)
    for claimed in ("real", "one"):

        result = simulate(iid_institutions(data, 5, seed), spec, seed=seed, transform=free_rider("inst4", claimed))
        for index, record in enumerate(result.rounds):
            scores = score(record, spec, data, seed=index)
            value = scores.values["inst4"]
            epsilon = 0.01 * abs(scores.total)
            assert value <= epsilon
            assert value < min(v for k, v in scores.values.items() if k != "inst4")
            if claimed == "one":
                assert abs(value) <= epsilon  # about zero


@pytest.mark.parametrize("seed", SEEDS)
def test_random_noise_update_gets_the_lowest_value(data, seed):
    """The noise has the norm of the update it replaces, so its size gives nothing away."""
    spec = make_spec(data)

    def noise(round_index, name, local):
        if name != "inst2":  # in the middle of the sorted ids
            return local
        rng = np.random.default_rng([seed, round_index])
        drawn = {k: rng.normal(size=np.shape(v)) for k, v in local.arrays.items()}
        scale = norm(local.arrays) / norm(drawn)
        return Update(local.institution, {k: (v * scale).astype(np.float32) for k, v in drawn.items()}, local.num_samples, {})

    result = simulate(iid_institutions(data, 5, seed), spec, seed=seed, transform=noise)
    totals = cumulative(result, spec, data)
    assert min(totals, key=totals.get) == "inst2", totals


def test_value_falls_as_label_noise_rises(data):
    """5 institutions of 72 rows with 0, 10, 20, 30, 40% of labels flipped, 3 rounds. A 10-point step
    is about 7 rows, so in a single federation two neighbours can swap (exact Shapley swaps them too:
    the value follows the rows actually drawn); averaged over federations the order is strict."""
    spec = make_spec(data)
    rates = [0.0, 0.1, 0.2, 0.3, 0.4]
    per_seed = []
    for seed in AVERAGED_SEEDS:
        institutions = iid_institutions(data, 5, seed, label_noise=rates)
        totals = cumulative(simulate(institutions, spec, seed=seed), spec, data)
        values = [totals[f"inst{k}"] for k in range(5)]
        assert values[0] > values[-1], (seed, values)  # clean beats 40% noise in every federation
        per_seed.append(values)
    mean = np.mean(per_seed, axis=0)
    assert np.all(np.diff(mean) < 0), mean


def test_value_rises_with_data_quantity_under_sample_weighted_aggregation(data):
    """FedAvg weights by sample count and each institution trains one local epoch (McMahan et al.):
    more rows, more weight and a better-informed update. (With a fixed number of local steps for
    everyone, the updates of small and large institutions are alike and the ordering vanishes.)"""
    check_value_rises_with_quantity(data, make_spec(data, local_epochs=1))


def check_value_rises_with_quantity(data, spec) -> None:
    """Institutions of 8, 16, 32, 64 and 128 rows: in every federation the largest is valued most and above the
    smallest; the mean over federations rises strictly with the size."""
    sizes = [8, 16, 32, 64, 128]
    bounds = np.cumsum([0, *sizes])
    per_seed = []
    for seed in AVERAGED_SEEDS:
        rows = np.random.default_rng(seed).permutation(data.n_train)
        institutions = [
            Institution(f"inst{k}", data.X_train[rows[bounds[k] : bounds[k + 1]]], data.y_train[rows[bounds[k] : bounds[k + 1]]])
            for k in range(5)
        ]
        totals = cumulative(simulate(institutions, spec, seed=seed), spec, data)
        values = [totals[f"inst{k}"] for k in range(5)]
        assert values[-1] == max(values) and values[-1] > values[0], (seed, values)
        per_seed.append(values)
    mean = np.mean(per_seed, axis=0)
    assert np.all(np.diff(mean) > 0), mean


@pytest.mark.parametrize("estimator", ["exact", "gtg", "tmc", "mc", "loo", "gain", "alignment"])
def test_efficiency_values_sum_to_the_rounds_gain(data, estimator):
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 6, 0), spec, seed=0, rounds=2).rounds[1]
    result = score(record, spec, data, estimator=estimator)
    values = list(result.values.values())
    total = result.v_grand - result.v_empty
    assert total != 0
    assert math.fsum(values) == pytest.approx(total, rel=1e-12, abs=1e-15)
    # on chain: 18-decimal units, each value rounded once to SCORE_DECIMALS decimals (plus the float rounding of the
    # values themselves: a few ulps of the largest)
    slack = len(values) * SCORE_QUANTUM / 2 + len(values) * max(map(abs, values)) * 2**-52 * 10**18
    assert abs(sum(result.fixed_point.values()) - total * 10**18) <= slack
    assert all(v % SCORE_QUANTUM == 0 for v in result.fixed_point.values())
    np.testing.assert_allclose(from_fixed_point(list(result.fixed_point.values())), values, rtol=0,
                               atol=0.5 * 10.0**-SCORE_DECIMALS)
    # v(empty) is the global model, v(N) the round's real aggregate
    round_model = make_strategy("fedavg").aggregate_fit(
        1, record.global_weights, list(record.updates)
    )
    metric = result.metric
    assert result.v_empty == fm.score(metric, data.y_test, predict_with_weights(spec, record.global_weights, data.X_test))
    assert result.v_grand == fm.score(metric, data.y_test, predict_with_weights(spec, round_model.weights, data.X_test))


def test_same_inputs_same_scores_bit_for_bit(data):
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 8, 3, prefix="0xInst"), spec, seed=3, rounds=2).rounds[1]
    first = score(record, spec, data, seed=11)
    again = score(record, spec, data, seed=11)
    assert first.reproducible_fields() == again.reproducible_fields()
    assert list(first.values) == sorted(first.values)
    # the caller's order does not matter
    reversed_updates = list(reversed(updates_of(record)))
    shuffled = score_round(
        global_weights=dict(reversed(list(record.global_weights.items()))),
        updates=reversed_updates,
        strategy_name="fedavg",
        strategy_params=None,
        strategy_state=None,
        spec=spec,
        X_val=data.X_test,
        y_val=data.y_test,
        seed=11,
    )
    assert shuffled.reproducible_fields() == first.reproducible_fields()
    assert [v.hex() for v in shuffled.values.values()] == [v.hex() for v in first.values.values()]
    # another seed samples other permutations (same utilities, so the same totals)
    other = score(record, spec, data, seed=12)
    assert other.v_grand == first.v_grand and other.v_empty == first.v_empty
    assert other.values != first.values


# --------------------------------------------------------------------------------------------------
# The utility: strategies, server-optimizer state, coalitions
# --------------------------------------------------------------------------------------------------


def test_server_optimizer_coalitions_start_from_the_rounds_state_without_mutating_it(data):
    spec = make_spec(data)
    states = [{}]  # the state at the start of each round = after the previous one
    result = run_simulation(
        iid_institutions(data, 4, 5), spec, resolve_rules(strategy="fedadam", strategy_params={"server_lr": 0.05}),
        rounds=3, seed=5, evaluate_every_round=False,
        on_round=lambda record: states.append({k: np.array(v, copy=True) for k, v in record.outcome.strategy_state.items()}),
    )
    record = result.rounds[2]
    state = states[2]  # after rounds 1 and 2: non-zero moments
    assert state and int(state["step"]) == 2
    snapshot = {k: np.array(v, copy=True) for k, v in state.items()}
    params = {"server_lr": 0.05}
    scores = score(record, spec, data, strategy="fedadam", strategy_params=params, strategy_state=state)
    for k, v in snapshot.items():  # not mutated
        assert np.array_equal(state[k], v) and state[k].dtype == v.dtype
    # v(N) is the metric of the round's real FedAdam step from that state
    assert scores.v_grand == fm.score(scores.metric, data.y_test, predict_with_weights(spec, record.outcome.weights, data.X_test))
    # coalitions do not leak state into each other: any order of evaluation gives the same values
    utility = coalition_utility(
        global_weights=record.global_weights, updates=updates_of(record), strategy_name="fedadam",
        strategy_params=params, strategy_state=state, spec=spec, X_val=data.X_test, y_val=data.y_test,
    )
    coalitions = [frozenset(c) for c in ({0}, {0, 1}, {2, 3}, {0, 1, 2, 3}, {1})]
    forward = [utility(c) for c in coalitions]
    backward = [utility(c) for c in reversed(coalitions)][::-1]
    assert forward == backward
    # without the state (zero moments) the same round scores differently: the state is used
    fresh = score(record, spec, data, strategy="fedadam", strategy_params=params, strategy_state=None)
    assert fresh.v_grand != scores.v_grand


def test_stateless_strategies_refuse_a_state_and_min_results_keeps_the_global_model(data):
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 4, 0), spec, seed=0, rounds=1).rounds[0]
    with pytest.raises(AggregatorError, match="no state"):
        score(record, spec, data, strategy_state={"step": np.asarray(1)})
    utility = coalition_utility(
        global_weights=record.global_weights, updates=updates_of(record), strategy_name="fedavg",
        strategy_params={"min_results": 2}, strategy_state=None, spec=spec, X_val=data.X_test, y_val=data.y_test,
    )
    assert utility.ids == ("inst0", "inst1", "inst2", "inst3")
    assert utility(frozenset({1})) == utility(frozenset())  # too few results: the global model is kept
    assert utility(frozenset({1, 2})) != utility(frozenset())


def test_robust_strategy_coalitions_use_the_rule_on_the_coalition_only(data):
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 5, 1), spec, seed=1, rounds=1).rounds[0]
    result = score(record, spec, data, strategy="median", estimator="exact")
    assert math.fsum(result.values.values()) == pytest.approx(result.total, rel=1e-12)
    utility = coalition_utility(
        global_weights=record.global_weights, updates=updates_of(record), strategy_name="median",
        strategy_params=None, strategy_state=None, spec=spec, X_val=data.X_test, y_val=data.y_test,
    )
    # a single-member coalition's median is that member's own update
    alone = utility.weights(frozenset({3}))
    update = next(u.arrays for u in updates_of(record) if u.institution == "inst3")
    for name, array in alone.items():
        np.testing.assert_allclose(array, record.global_weights[name] + update[name], rtol=0, atol=1e-6)


def test_utility_metric_defaults_and_overrides(data):
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 4, 2), spec, seed=2, rounds=1).rounds[0]
    default = score(record, spec, data, estimator="exact")
    expected = spec.metric if DEFAULT_UTILITY_METRIC == "task" else DEFAULT_UTILITY_METRIC
    assert default.metric == expected
    for metric in ("accuracy", "auc", "neg_loss"):
        result = score(record, spec, data, estimator="exact", utility_metric=metric)
        assert result.metric == metric
        assert result.v_empty == fm.score(metric, data.y_test, predict_with_weights(spec, record.global_weights, data.X_test))
    assert score(record, spec, data, estimator="exact", utility_metric="task").metric == spec.metric
    with pytest.raises(AggregatorError, match="utility metric"):
        score(record, spec, data, utility_metric="f1")


def test_utility_honours_the_tasks_population_weighting(data):
    """v(empty) and v(N) are the weighted metric the task declares; the values still sum to v(N) - v(empty)."""
    from dataclasses import replace

    from fedcore.population import group_weights, population_score
    from fedcore.task import TargetPopulation

    spec = make_spec(data)
    record = simulate(iid_institutions(data, 4, 1), spec, seed=1, rounds=1).rounds[0]
    rows = len(data.y_test)
    groups = tuple("small" if i < rows // 10 else "large" for i in range(rows))  # a group of a tenth of the rows
    equal = replace(spec, population=TargetPopulation(weighting="equal", group_column="site"))
    pooled = score(record, spec, data, estimator="exact", groups_val=groups)
    weighted = score(record, equal, data, estimator="exact", groups_val=groups)
    probabilities = predict_with_weights(spec, record.global_weights, data.X_test)
    expected = population_score("neg_loss", data.y_test, probabilities, groups, group_weights(groups, equal.population))
    assert weighted.v_empty == pytest.approx(expected, rel=1e-12)
    assert pooled.v_empty == pytest.approx(fm.neg_loss(data.y_test, probabilities), rel=1e-12)
    assert weighted.v_empty != pytest.approx(pooled.v_empty, rel=1e-6)
    assert math.fsum(weighted.values.values()) == pytest.approx(weighted.total, abs=1e-12)
    with pytest.raises(AggregatorError, match="no group column"):
        score(record, equal, data)
    with pytest.raises(AggregatorError, match="groups_val has 3 values"):
        score(record, equal, data, groups_val=("a", "b", "c"))


def test_exact_through_score_round_matches_exact_on_the_utility(data):
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 5, 4), spec, seed=4, rounds=2).rounds[1]
    result = score(record, spec, data, estimator="exact")
    utility = coalition_utility(
        global_weights=record.global_weights, updates=updates_of(record), strategy_name="fedavg",
        strategy_params=None, strategy_state=None, spec=spec, X_val=data.X_test, y_val=data.y_test,
    )
    direct = exact_shapley(5, utility)
    assert result.evaluations == 32 and result.std_errors == dict.fromkeys(result.values, 0.0)
    np.testing.assert_allclose(list(result.values.values()), direct.values, rtol=1e-12, atol=1e-15)


def test_row_spread_is_the_standard_error_of_each_value_over_the_validation_rows(data):
    """Exact Shapley of 3 institutions split by hand over the 122 validation rows: each value is the mean of its
    per-row Shapley values, and ``row_std_errors`` their standard error (pooled: ``std / sqrt(m)``)."""
    from itertools import combinations

    spec = make_spec(data)
    record = simulate(iid_institutions(data, 3, 2), spec, seed=2, rounds=2).rounds[1]
    result = score(record, spec, data, estimator="exact", row_spread=True)
    utility = coalition_utility(
        global_weights=record.global_weights, updates=updates_of(record), strategy_name="fedavg",
        strategy_params=None, strategy_state=None, spec=spec, X_val=data.X_test, y_val=data.y_test,
    )
    rows = {frozenset(c): fm.row_scores("neg_loss", data.y_test, utility.predict(utility.weights(frozenset(c))))
            for k in range(4) for c in combinations(range(3), k)}
    weight = {0: 1 / 3, 1: 1 / 6, 2: 1 / 3}  # |S|! (n - |S| - 1)! / n! for n = 3
    for i, who in enumerate(utility.ids):
        per_row = sum(weight[len(c)] * (rows[c | {i}] - rows[c]) for c in rows if i not in c)
        assert result.values[who] == pytest.approx(per_row.mean(), abs=1e-9)
        assert result.row_std_errors[who] == pytest.approx(per_row.std(ddof=1) / math.sqrt(len(per_row)), rel=1e-6)
        assert result.row_std_errors[who] > 0 and result.std_errors[who] == 0.0
    assert score(record, spec, data, estimator="exact").row_std_errors == {}
    sampled = score(record, spec, data, row_spread=True)  # GTG: sampling error and rows' error, both
    assert all(sampled.std_errors[w] > 0 and sampled.row_std_errors[w] > 0 for w in sampled.values)
    with pytest.raises(AggregatorError, match="mean over rows"):
        score(record, spec, data, estimator="exact", row_spread=True, utility_metric="auc")
    with pytest.raises(AggregatorError, match="mean over rows"):
        score(record, spec, data, estimator="alignment", row_spread=True)


# --------------------------------------------------------------------------------------------------
# Defaults and settings
# --------------------------------------------------------------------------------------------------


def test_defaults_are_valid_and_match_the_benchmark():
    assert DEFAULT_ESTIMATOR in ESTIMATORS
    for name, params in DEFAULT_ESTIMATOR_PARAMS.items():
        estimator_settings(name, None)  # accepted, shares resolved
        assert set(params) <= {"sampling", "truncation_tolerance", "convergence_share", "min_permutations", "max_permutations",
                               "max_evaluations", "round_truncation_threshold", "convergence_tolerance"}
    if not RESULTS.is_file():
        pytest.skip("bench/results/shapley.json not generated yet (make bench-shapley)")
    choice = json.loads(RESULTS.read_text())["choice"]
    assert choice["utility_metric"] == DEFAULT_UTILITY_METRIC
    assert choice["estimator"] == DEFAULT_ESTIMATOR
    assert choice["estimator_params"] == dict(DEFAULT_ESTIMATOR_PARAMS[DEFAULT_ESTIMATOR])


def test_estimator_settings_merge_defaults_and_resolve_the_convergence_share(data):
    assert estimator_settings("gtg", {"max_evaluations": 500}) == {**DEFAULT_ESTIMATOR_PARAMS.get("gtg", {}), "max_evaluations": 500}
    assert "convergence_share" not in estimator_settings("gtg", {"convergence_tolerance": 0.1})
    with pytest.raises(AggregatorError, match="seed"):
        estimator_settings("gtg", {"seed": 3})
    with pytest.raises(AggregatorError, match="convergence_share"):
        estimator_settings("loo", {"convergence_share": 1.0})
    with pytest.raises(AggregatorError, match="not both"):
        estimator_settings("mc", {"convergence_share": 1.0, "convergence_tolerance": 0.1})
    with pytest.raises(AggregatorError, match="truncation"):
        estimator_settings("gtg", {"truncation_tolerance": 2.0})
    with pytest.raises(AggregatorError, match="does not take"):
        estimator_settings("tmc", {"round_truncation_threshold": 0.1})
    with pytest.raises(AggregatorError, match="unknown contribution estimator"):
        estimator_settings("banzhaf")
    # a share is a tolerance of share / n
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 6, 0), spec, seed=0, rounds=1).rounds[0]
    by_share = score(record, spec, data, estimator="tmc", estimator_params={"convergence_share": 1.2})
    by_tolerance = score(record, spec, data, estimator="tmc", estimator_params={"convergence_tolerance": 1.2 / 6})
    assert by_share.values == by_tolerance.values
    make_estimator("gtg", **{k: v for k, v in DEFAULT_ESTIMATOR_PARAMS.get("gtg", {}).items() if k != "convergence_share"})


# --------------------------------------------------------------------------------------------------
# Bad input: one clear error, naming what is wrong
# --------------------------------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_clear_error(data):
    spec = make_spec(data)
    record = simulate(iid_institutions(data, 3, 0), spec, seed=0, rounds=1).rounds[0]
    good = updates_of(record)

    def call(**changes):
        arguments = dict(
            global_weights=record.global_weights, updates=good, strategy_name="fedavg", strategy_params=None,
            strategy_state=None, spec=spec, X_val=data.X_test, y_val=data.y_test, seed=0,
        )
        arguments.update(changes)
        return score_round(**arguments)

    others = [u for u in good if u.institution != "inst1"]
    update, count = next(u for u in good if u.institution == "inst1").arrays, 10

    def inst1(arrays, samples):
        return {"updates": [*others, Update("inst1", arrays, samples)]}

    nan = {k: np.full_like(v, np.nan) for k, v in update.items()}
    wrong_shape = {k: np.zeros((7,), np.float32) for k in update}
    cases = [
        ({"updates": []}, "no updates"),
        (inst1(nan, count), "inst1.*not finite"),
        (inst1(wrong_shape, count), "inst1.*shape"),
        (inst1(update, 0), "inst1.*sample count"),
        (inst1(update, True), "inst1.*sample count"),
        (inst1({"other": np.zeros(1)}, count), "inst1.*tensors"),
        ({"updates": [*good, Update(7, update, count)]}, "ids must be"),
        ({"updates": [*good, Update("inst1", update, count)]}, "two updates"),
        ({"updates": {u.institution: (u.arrays, u.num_samples) for u in good}}, "sequence of Update"),
        ({"strategy_name": "fedsgd"}, "strategy"),
        ({"strategy_params": {"server_lr": -1}}, "strategy"),
        ({"estimator": "banzhaf"}, "unknown contribution estimator"),
        ({"estimator_params": {"sampling": "sobol"}}, "sampling"),
        ({"seed": -1}, "seed"),
        ({"seed": None}, "seed"),
        ({"X_val": data.X_test[:, :5]}, "cannot score|features|shape"),
        ({"y_val": data.y_test[:-1]}, "rows"),
        ({"y_val": data.y_test * 2}, "0/1"),
        ({"X_val": np.full_like(data.X_test, np.inf)}, "NaN or Inf"),
        ({"estimator": "exact", "updates": [Update(f"i{k:02d}", update, count) for k in range(15)]}, "exact Shapley needs"),
    ]
    for changes, message in cases:
        with pytest.raises(AggregatorError, match=message):
            call(**changes)
    assert issubclass(AggregatorError, FedLedgerError)


def test_a_round_of_40_institutions_is_scored(data):
    """The issue's speed target (a round of 100 institutions of a tabular model in at most 30 s) is measured by the
    benchmark (make bench-shapley), never by a timed test; here a round of 40 is scored completely and efficiently."""
    spec = make_spec(data, local_steps=5)
    parts = iid_partition(data.n_train, 40, seed=0)
    institutions = [Institution(f"inst{k:03d}", X, y) for k, (X, y) in enumerate(split_by_partition(data.X_train, data.y_train, parts))]
    record = simulate(institutions, spec, seed=0, rounds=1).rounds[0]
    result = score(record, spec, data)
    assert len(result.values) == 40
    assert math.fsum(result.values.values()) == pytest.approx(result.total, rel=1e-12)
    assert scoring.CHAIN_SCORE_CAP == 10**36 and all(abs(v) <= 10**36 for v in result.fixed_point.values())


# --------------------------------------------------------------------------------------------------
# The same properties when every institution trains with DP-SGD (issue 14)
# --------------------------------------------------------------------------------------------------

DP_EPSILONS = (1.0, 10.0)


def private_spec(data, epsilon, **training) -> TaskSpec:
    """The tests' task with DP-SGD: (epsilon, 1e-4) per institution over the 3 rounds, clipping norm 1."""
    from dataclasses import replace

    from fedcore.task import PrivacySettings

    return replace(make_spec(data, **training), privacy=PrivacySettings(epsilon=epsilon, delta=1e-4, max_grad_norm=1.0, rounds=3))


@pytest.mark.parametrize("epsilon", DP_EPSILONS)
def test_under_dp_twins_are_valued_alike_on_average(data, epsilon):
    """With DP the twins' updates differ by their own sampling and noise, so one round's values do too; over
    federations and rounds the twin is valued like its original (paired differences centred on zero) and no
    further from it than two other institutions of the same size are from each other."""
    spec = private_spec(data, epsilon)
    twin_gaps, other_gaps = [], []
    for seed in SEEDS:
        others = iid_institutions(data, 3, seed)
        institutions = [*others, Institution("twin", others[0].X_train, others[0].y_train)]
        for index, record in enumerate(simulate(institutions, spec, seed=seed).rounds):
            values = score(record, spec, data, seed=index).values
            twin_gaps.append(values["inst0"] - values["twin"])
            other_gaps.append(values["inst1"] - values["inst2"])
    gaps = np.asarray(twin_gaps)
    assert abs(gaps.mean()) <= 3 * gaps.std(ddof=1) / math.sqrt(len(gaps)), gaps
    assert np.abs(gaps).mean() <= 2 * np.abs(other_gaps).mean(), (gaps, other_gaps)


@pytest.mark.parametrize("epsilon", DP_EPSILONS)
def test_under_dp_free_rider_gets_at_most_epsilon(data, epsilon):
    """As without DP: never above epsilon, about zero without weight, the lowest with its real weight. (Without
    weight it is not always the lowest: at epsilon 1 the DP noise can make an honest update harmful in a round.)"""
    spec = private_spec(data, epsilon)
    for seed in SEEDS[:2]:
        for claimed in ("real", "one"):
            free_ride = free_rider("inst4", claimed)
            for index, record in enumerate(simulate(iid_institutions(data, 5, seed), spec, seed=seed, transform=free_ride).rounds):
                scores = score(record, spec, data, seed=index)
                value, tolerance = scores.values["inst4"], 0.01 * abs(scores.total)
                assert value <= tolerance
                if claimed == "real":
                    assert value < min(v for k, v in scores.values.items() if k != "inst4")
                else:
                    assert abs(value) <= tolerance


@pytest.mark.parametrize("epsilon", DP_EPSILONS)
def test_under_dp_random_noise_update_gets_the_lowest_value(data, epsilon):
    spec = private_spec(data, epsilon)
    for seed in SEEDS:

        def noise(round_index, name, local, seed=seed):
            if name != "inst2":
                return local
            rng = np.random.default_rng([seed, round_index])
            drawn = {k: rng.normal(size=np.shape(v)) for k, v in local.arrays.items()}
            scale = norm(local.arrays) / norm(drawn)
            return Update(local.institution, {k: (v * scale).astype(np.float32) for k, v in drawn.items()}, local.num_samples, {})

        totals = cumulative(simulate(iid_institutions(data, 5, seed), spec, seed=seed, transform=noise), spec, data)
        assert min(totals, key=totals.get) == "inst2", (seed, totals)


@pytest.mark.parametrize("epsilon", DP_EPSILONS)
def test_under_dp_value_falls_as_label_noise_rises(data, epsilon):
    """Clean data beats 40% label noise in every federation; the mean value over federations falls with the
    noise rate: strictly at epsilon 10; at epsilon 1 the DP noise swaps the 0% and 10% neighbours
    (means 0.083 and 0.107 over seeds 0-4), so there the mean is checked to rank at Spearman <= -0.9."""
    from aggregator.shapley import spearman

    spec = private_spec(data, epsilon)
    rates = [0.0, 0.1, 0.2, 0.3, 0.4]
    per_seed = []
    for seed in AVERAGED_SEEDS:
        totals = cumulative(simulate(iid_institutions(data, 5, seed, label_noise=rates), spec, seed=seed), spec, data)
        values = [totals[f"inst{k}"] for k in range(5)]
        assert values[0] > values[-1], (seed, values)
        per_seed.append(values)
    mean = np.mean(per_seed, axis=0)
    assert spearman(mean, rates) <= -0.9, mean
    if epsilon >= 10:
        assert np.all(np.diff(mean) < 0), mean


@pytest.mark.parametrize("epsilon", DP_EPSILONS)
def test_under_dp_value_rises_with_data_quantity(data, epsilon):
    check_value_rises_with_quantity(data, private_spec(data, epsilon, local_epochs=1))
