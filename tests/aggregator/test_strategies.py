"""Aggregation rules in closed form, robustness to outliers, and the Strategy round steps."""

import numpy as np
import pytest

from aggregator.strategies import (
    STRATEGIES,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedProx,
    FedYogi,
    FitFailure,
    Krum,
    Median,
    MultiKrum,
    TrimmedMean,
    coordinate_median,
    fedadagrad_step,
    fedadam_step,
    fedavg,
    fedyogi_step,
    krum,
    krum_scores,
    krum_select,
    make_strategy,
    multi_krum,
    trimmed_mean,
)
from fedcore.codec import encode
from fedcore.errors import AggregatorError, ConfigError
from fedcore.types import Update


def arrays(w, b):
    return {"w": np.asarray(w, dtype=np.float32).reshape(2, 2), "b": np.asarray([b], dtype=np.float32)}


def honest_and_attackers(n_honest=7, n_attackers=2, seed=0, attack=50.0):
    rng = np.random.default_rng(seed)
    honest = [arrays(1.0 + 0.05 * rng.normal(size=4), 0.5 + 0.05 * rng.normal()) for _ in range(n_honest)]
    attackers = [arrays(np.full(4, attack), -attack) for _ in range(n_attackers)]
    return honest, attackers


GLOBAL = arrays([0.0, 0.0, 0.0, 0.0], 0.0)


# -- pure functions ------------------------------------------------------------------------------


def test_fedavg_of_identical_updates_is_that_update():
    u = arrays([1.5, -2.0, 0.25, 3.0], 0.125)
    out = fedavg([u, u, u], [10, 3, 7])
    for name in u:
        np.testing.assert_array_equal(out[name], u[name])
        assert out[name].dtype == np.float32 and out[name].shape == u[name].shape


def test_fedavg_weights_are_proportional_to_sample_counts():
    a = arrays([1, 1, 1, 1], 1)
    b = arrays([5, 5, 5, 5], -3)
    out = fedavg([a, b], [1, 3])
    np.testing.assert_allclose(out["w"], np.full((2, 2), (1 + 3 * 5) / 4))
    np.testing.assert_allclose(out["b"], [(1 - 9) / 4])
    scaled = fedavg([a, b], [100, 300])
    assert encode(scaled) == encode(out)
    np.testing.assert_allclose(fedavg([a, b])["w"], np.full((2, 2), 3.0))  # no weights: plain mean


def test_median_and_trimmed_mean_ignore_a_far_outlier():
    honest, attackers = honest_and_attackers(n_honest=6, n_attackers=1, attack=1e6)
    updates = honest + attackers
    honest_mean = fedavg(honest)
    polluted_mean = fedavg(updates)
    assert abs(polluted_mean["w"]).max() > 1e4  # the mean is dragged away
    for robust in (coordinate_median(updates), trimmed_mean(updates, 0.2)):
        np.testing.assert_allclose(robust["w"], honest_mean["w"], atol=0.15)
        np.testing.assert_allclose(robust["b"], honest_mean["b"], atol=0.15)


def test_median_and_trimmed_mean_closed_forms():
    values = [arrays([v] * 4, v) for v in (1.0, 2.0, 4.0, 100.0)]
    np.testing.assert_allclose(coordinate_median(values)["b"], [3.0])  # mean of the middle two
    np.testing.assert_allclose(trimmed_mean(values, 0.25)["b"], [3.0])  # drop 1 at each end
    np.testing.assert_allclose(trimmed_mean(values, 0.0)["b"], [107.0 / 4])  # no trimming = mean
    with pytest.raises(AggregatorError):
        trimmed_mean(values, 0.5)


def test_krum_picks_an_honest_update_against_a_minority_of_attackers():
    honest, attackers = honest_and_attackers(n_honest=7, n_attackers=2)
    updates = attackers[:1] + honest + attackers[1:]  # attackers at both ends of the list
    chosen = int(krum_select(updates, n_byzantine=2)[0])
    assert 1 <= chosen <= 7
    out = krum(updates, n_byzantine=2)
    assert any(encode(out) == encode(h) for h in honest)
    scores = krum_scores(updates, 2)
    assert scores[0] > scores[1:8].max() and scores[8] > scores[1:8].max()


def test_krum_resists_colluding_identical_attackers():
    honest, attackers = honest_and_attackers(n_honest=7, n_attackers=2, attack=3.0)
    chosen = krum_select(honest + attackers, n_byzantine=2, n_selected=5)
    assert set(chosen.tolist()) <= set(range(7))


def test_multi_krum_averages_only_honest_updates():
    honest, attackers = honest_and_attackers()
    out = multi_krum(honest + attackers, n_byzantine=2)
    np.testing.assert_allclose(out["w"], fedavg(honest)["w"], atol=1e-6)


def test_functions_reject_mismatched_updates():
    with pytest.raises(AggregatorError, match="no updates"):
        fedavg([])
    with pytest.raises(AggregatorError, match="tensors"):
        fedavg([arrays([1] * 4, 1), {"w": np.zeros((2, 2), np.float32)}])
    with pytest.raises(AggregatorError, match="weights"):
        fedavg([arrays([1] * 4, 1)], [0])


def test_fedadam_first_step_closed_form():
    weights = arrays([1, 1, 1, 1], 1)
    delta = arrays([0.2, -0.4, 0.0, 1.0], -0.5)
    lr, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    new, state = fedadam_step(weights, delta, None, lr=lr, beta1=b1, beta2=b2, tau=tau)
    d = delta["w"].astype(np.float64)
    expected = 1 + lr * (1 - b1) * d / (np.sqrt((1 - b2) * d * d) + tau)
    np.testing.assert_allclose(new["w"], expected, rtol=1e-6)
    assert state.step == 1
    np.testing.assert_allclose(state.m["w"], (1 - b1) * d)


def test_yogi_and_adagrad_second_moments():
    weights = arrays([0, 0, 0, 0], 0)
    delta = arrays([0.5, -0.5, 1.0, 2.0], 1.0)
    d2 = delta["w"].astype(np.float64) ** 2
    _, yogi = fedyogi_step(weights, delta, None, beta2=0.9)
    np.testing.assert_allclose(yogi.v["w"], 0.1 * d2)  # from v=0: -(1-b2) d^2 sign(-d^2)
    _, yogi2 = fedyogi_step(weights, delta, yogi, beta2=0.9)
    np.testing.assert_allclose(yogi2.v["w"], 0.2 * d2)  # additive growth while v < d^2
    _, ada = fedadagrad_step(weights, delta, None)
    _, ada2 = fedadagrad_step(weights, delta, ada)
    np.testing.assert_allclose(ada2.v["w"], 2 * d2)


# -- strategies ----------------------------------------------------------------------------------


def results_from(updates, samples=None):
    samples = samples or [10] * len(updates)
    return [Update(f"client-{i}", u, n) for i, (u, n) in enumerate(zip(updates, samples))]


def test_fedavg_strategy_adds_the_weighted_mean_delta():
    global_weights = arrays([1, 2, 3, 4], 5)
    a, b = arrays([1, 1, 1, 1], 0), arrays([-1, -1, -1, -1], 4)
    outcome = FedAvg().aggregate_fit(1, global_weights, results_from([a, b], [30, 10]))
    np.testing.assert_allclose(outcome.weights["w"], global_weights["w"] + 0.5)
    np.testing.assert_allclose(outcome.weights["b"], [6.0])
    assert outcome.used == ("client-0", "client-1") and outcome.excluded == {}
    half = FedAvg(server_lr=0.5).aggregate(global_weights, results_from([a, b], [30, 10]))
    np.testing.assert_allclose(half["w"], global_weights["w"] + 0.25)


def test_result_order_does_not_change_the_bytes():
    rng = np.random.default_rng(1)
    updates = [arrays(rng.normal(size=4), rng.normal()) for _ in range(5)]
    results = results_from(updates, [3, 8, 1, 9, 4])
    for strategy in (FedAvg(), Median(), MultiKrum(n_byzantine=1), FedAdam()):
        forward = strategy.aggregate(GLOBAL, results)
        strategy.reset()
        backward = strategy.aggregate(GLOBAL, results[::-1])
        assert encode(forward) == encode(backward), strategy.name


def test_failures_and_invalid_updates_are_data_not_exceptions():
    good = arrays([1, 1, 1, 1], 1)
    bad_nan = arrays([np.nan, 1, 1, 1], 1)
    results = [
        Update("good", good, 10),
        Update("nan", bad_nan, 10),
        Update("shape", {"w": np.zeros((4,), np.float32), "b": np.zeros(1, np.float32)}, 10),
        Update("names", {"w": good["w"]}, 10),
        Update("zero", good, 0),
    ]
    outcome = FedAvg().aggregate_fit(3, GLOBAL, results, [FitFailure("crashed", "timeout")])
    assert outcome.used == ("good",)
    assert set(outcome.excluded) == {"nan", "shape", "names", "zero", "crashed"}
    assert "not finite" in outcome.excluded["nan"] and "timeout" in outcome.excluded["crashed"]
    np.testing.assert_allclose(outcome.weights["w"], good["w"])


def test_no_valid_result_keeps_the_global_model():
    outcome = FedAvg(min_results=2).aggregate_fit(1, GLOBAL, results_from([arrays([1] * 4, 1)]))
    assert outcome.aggregated_update is None and outcome.used == ()
    assert outcome.metrics["kept_global"] == 1.0 and "too few" in outcome.excluded["client-0"]
    assert encode(outcome.weights) == encode(GLOBAL)
    empty = FedAdam().aggregate_fit(1, GLOBAL, [], [FitFailure("a", "offline")])
    assert encode(empty.weights) == encode(GLOBAL) and empty.excluded == {"a": "failed: offline"}


def test_duplicate_client_ids_are_excluded():
    u = arrays([1] * 4, 1)
    outcome = FedAvg().aggregate_fit(1, GLOBAL, [Update("x", u, 5), Update("x", u, 5), Update("y", u, 5)])
    assert outcome.used == ("y",) and "duplicate" in outcome.excluded["x"]


def test_krum_strategies_report_the_rejected_attackers():
    honest, attackers = honest_and_attackers(n_honest=5, n_attackers=1)
    results = results_from(honest + attackers)
    krum_outcome = Krum(n_byzantine=1).aggregate_fit(1, GLOBAL, results)
    assert len(krum_outcome.used) == 1 and krum_outcome.used[0] != "client-5"
    multi = MultiKrum(n_byzantine=1).aggregate_fit(1, GLOBAL, results)
    assert multi.used == tuple(f"client-{i}" for i in range(5))
    assert "not selected" in multi.excluded["client-5"]
    trimmed = TrimmedMean(trim_fraction=0.2).aggregate(GLOBAL, results)
    assert abs(trimmed["w"]).max() < 2.0


def test_fedprox_hands_out_mu_through_the_rules_and_aggregates_like_fedavg():
    from aggregator.rules import resolve_rules

    strategy = FedProx(mu=0.3, fit_config={"lr": 0.01})
    rules = resolve_rules(strategy="fedprox", strategy_params={"mu": 0.3, "fit_config": {"lr": 0.01}})
    assert rules.fit_config() == {"lr": 0.01, "fedprox_mu": 0.3}
    assert resolve_rules(strategy="fedavg", strategy_params={"fit_config": {"lr": 0.01}}).fit_config() == {"lr": 0.01}
    results = results_from([arrays([1] * 4, 1), arrays([3] * 4, 0)], [1, 1])
    assert encode(strategy.aggregate(GLOBAL, results)) == encode(FedAvg().aggregate(GLOBAL, results))


def test_server_optimizer_state_survives_a_restart():
    rng = np.random.default_rng(2)
    rounds = [results_from([arrays(rng.normal(size=4), rng.normal()) for _ in range(3)]) for _ in range(3)]
    for cls in (FedAdam, FedYogi, FedAdagrad):
        straight = cls(server_lr=0.05)
        weights = GLOBAL
        for r in rounds:
            weights = straight.aggregate(weights, r)
        resumed = cls(server_lr=0.05)
        weights2 = resumed.aggregate(resumed.aggregate(GLOBAL, rounds[0]), rounds[1])
        saved = resumed.state_dict()
        fresh = cls(server_lr=0.05)
        fresh.load_state_dict(saved)
        weights2 = fresh.aggregate(weights2, rounds[2])
        assert encode(weights2) == encode(weights), cls.name
        assert int(saved["step"]) == 2
        assert encode(saved)  # the state itself travels through the codec


def test_fedopt_steps_match_the_pure_functions():
    results = results_from([arrays([0.1, 0.2, -0.3, 0.4], 0.5), arrays([0.3, 0.0, -0.1, 0.2], 0.1)], [2, 6])
    mean = fedavg([r.arrays for r in results], [2, 6])
    expected, _ = fedyogi_step(GLOBAL, mean, None, lr=0.2, beta1=0.8, beta2=0.95, tau=0.01)
    got = FedYogi(server_lr=0.2, beta1=0.8, beta2=0.95, tau=0.01).aggregate(GLOBAL, results)
    assert encode(got) == encode(expected)


def test_make_strategy_registry_and_keyword_only_constructors():
    assert set(STRATEGIES) == {"fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "median", "trimmed_mean", "krum", "multikrum"}
    assert isinstance(make_strategy("FedAdam", server_lr=0.01), FedAdam)
    assert isinstance(make_strategy("trimmed-mean"), TrimmedMean)
    assert isinstance(make_strategy("MultiKrum", n_byzantine=2), MultiKrum)
    assert make_strategy("fedprox", mu=0.5).mu == 0.5
    with pytest.raises(ConfigError, match="unknown strategy"):
        make_strategy("scaffold")
    with pytest.raises(ConfigError, match="bad parameters"):
        make_strategy("fedavg", mu=0.1)
    with pytest.raises(TypeError):
        FedAvg(0.5)  # type: ignore[misc]
    with pytest.raises(ConfigError):
        FedAvg(server_lr=0.0)
    with pytest.raises(ConfigError):
        Krum(n_byzantine=-1)
