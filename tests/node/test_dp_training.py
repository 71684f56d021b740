"""DP-SGD in local training (Opacus): the accountant's noise meets the budget, clipping matches Opacus, noise is real."""

import dataclasses

import numpy as np
import pytest
import torch

from fedcore.models import build_model, get_weights
from fedcore.task import PrivacySettings, TaskSpec, TrainingSettings
from node import privacy as dp
from node import training as nt
from node.training import DPSGD, train_local


def make_data(n=60, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ np.linspace(-2, 2, d) + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return X, y


def make_spec(model="logreg", epsilon=1.0, **training):
    settings = {"local_steps": 20, "batch_size": 4, "lr": 0.1, **training}
    return TaskSpec(
        name="synthetic", model=model, model_params={"hidden_sizes": [6]} if model == "mlp" else {},
        feature_columns=tuple(f"x{i}" for i in range(5)), label_column="y", training=TrainingSettings(**settings),
        privacy=PrivacySettings(epsilon=epsilon, delta=1e-4, max_grad_norm=0.5, rounds=15),
    )


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 10.0])
def test_accountant_noise_spends_the_budget_over_the_bounty_and_not_more(epsilon):
    """Opacus's RDP accountant: after the bounty's rounds the spend is at most epsilon (and close to it);
    the first round that would overspend is refused."""
    spec = make_spec(epsilon=epsilon)
    n = 60
    sigma = dp.noise_multiplier(spec.privacy, spec.training, n)
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(spec.privacy.rounds * spec.training.local_steps):
        accountant.step(noise_multiplier=sigma, sample_rate=4 / n)
    spent = accountant.get_epsilon(1e-4)
    assert spent <= epsilon and spent > 0.97 * epsilon
    assert dp.epsilon_spent(spec.privacy, spec.training, n, 15) == pytest.approx(spent, rel=1e-9)
    cost = dp.round_cost(spec.privacy, spec.training, n)
    assert cost == (sigma, 4 / n, 20)
    assert dp.check_budget(spec.privacy, spec.training, n, [cost] * 14) == (cost, pytest.approx(spent, rel=1e-9))
    last = 15
    while dp.epsilon_spent(spec.privacy, spec.training, n, last + 1) <= epsilon:
        last += 1
    assert last <= 16  # the noise is set for 15 rounds: at most one more fits in the accountant's slack
    with pytest.raises(dp.PrivacyBudgetExceeded, match="privacy budget exhausted"):
        dp.check_budget(spec.privacy, spec.training, n, [cost] * last)


def test_smaller_epsilon_means_more_noise():
    sigmas = [dp.noise_multiplier(make_spec(epsilon=e).privacy, make_spec().training, 60) for e in (0.1, 1, 10, 50)]
    assert sigmas == sorted(sigmas, reverse=True) and sigmas[-1] > 0


@pytest.mark.parametrize("settings", [{"optimizer": "sgd"}, {"optimizer": "adam", "lr": 0.02, "fedprox_mu": 0.1}])
def test_logreg_closed_form_clips_like_opacus(settings):
    """Without noise, the closed-form DP step equals Opacus's GradSampleModule + DPOptimizer (same Poisson batches)."""
    X, y = make_data(n=37)
    spec = make_spec(**settings)
    private = DPSGD(noise_multiplier=0.0, max_grad_norm=0.3, sample_rate=0.12, expected_batch_size=4, steps=30)
    fast, slow = build_model(spec, seed=3), build_model(spec, seed=3)
    anchor = [p.detach().clone() for p in build_model(spec, seed=4).parameters()]
    assert nt._run_logreg_closed_form(fast, X, y, spec.training, anchor, 11, private) == 30
    assert nt._run_opacus(slow, torch.from_numpy(X), torch.from_numpy(y), spec.training, anchor, 11, private) == 30
    for name, value in get_weights(slow).items():
        np.testing.assert_allclose(get_weights(fast)[name], value, rtol=1e-4, atol=1e-6)
    unclipped = dataclasses.replace(private, max_grad_norm=1e6)
    free = build_model(spec, seed=3)
    nt._run_logreg_closed_form(free, X, y, spec.training, anchor, 11, unclipped)
    assert not np.allclose(get_weights(free)["linear.weight"], get_weights(fast)["linear.weight"])  # clipping bit


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_dp_training_is_deterministic_and_noisy(model):
    """Same seed, same update; the noise the accountant asks for moves the update far more at epsilon 0.1 than at 50."""
    X, y = make_data()
    weights = get_weights(build_model(make_spec(model), seed=0))

    def delta(epsilon, seed=5):
        update = train_local(weights, X, y, make_spec(model, epsilon=epsilon), seed=seed)
        return np.concatenate([a.ravel() for a in update.arrays.values()]), update.metrics

    first, metrics = delta(1.0)
    np.testing.assert_array_equal(first, delta(1.0)[0])
    assert metrics["noise_multiplier"] == pytest.approx(dp.noise_multiplier(make_spec(model).privacy, make_spec(model).training, 60))
    assert not np.array_equal(first, delta(1.0, seed=6)[0])
    plain = train_local(weights, X, y, dataclasses.replace(make_spec(model), privacy=PrivacySettings()), seed=5)
    plain_delta = np.concatenate([a.ravel() for a in plain.arrays.values()])
    assert "noise_multiplier" not in plain.metrics
    # distance from the non-private update grows with the noise
    assert np.linalg.norm(delta(0.1)[0] - plain_delta) > 3 * np.linalg.norm(delta(50.0)[0] - plain_delta)


def test_poisson_batches_have_the_expected_size():
    private = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.1, expected_batch_size=10, steps=400)
    sizes = [len(rows) for rows in private.batches(100, seed=0)]
    assert len(sizes) == 400 and abs(np.mean(sizes) - 10) < 1 and min(sizes) < 10 < max(sizes)
