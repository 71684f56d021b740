"""Local training (and the model zoo it trains): deterministic deltas that lower the local loss."""

import numpy as np
import pytest
import torch

from fedcore.codec import encode
from fedcore.errors import ConfigError, DataError, NodeError
from fedcore.models import (
    MODEL_BUILDERS,
    build_model,
    get_weights,
    predict_with_weights,
    register_model,
    set_weights,
    weight_spec,
)
from fedcore.task import TaskSpec, TrainingSettings
from node.training import apply_update, settings_with, train_local


def make_data(n=120, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = np.linspace(-2, 2, d)
    y = (X @ w + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return X, y


def make_spec(d=5, model="logreg", **training):
    settings = {"local_steps": 60, "batch_size": 8, "lr": 0.1, **training}
    if settings.get("local_epochs") is not None:
        settings["local_steps"] = None
    return TaskSpec(
        name="synthetic",
        model=model,
        model_params={"hidden_sizes": [6]} if model == "mlp" else {},
        feature_columns=tuple(f"x{i}" for i in range(d)),
        label_column="y",
        training=TrainingSettings(**settings),
    )


# -- models ----------------------------------------------------------------------------------------


def test_initial_weights_depend_on_the_seed_only():
    spec = make_spec()
    torch.manual_seed(123)  # the global RNG must not matter
    a = get_weights(build_model(spec, seed=1))
    torch.manual_seed(999)
    b = get_weights(build_model(spec, seed=1))
    c = get_weights(build_model(spec, seed=2))
    assert encode(a) == encode(b) != encode(c)


def test_weights_are_ordered_float32_in_state_dict_order():
    logreg = get_weights(build_model("logreg", 13, seed=0))
    assert list(logreg) == ["linear.weight", "linear.bias"]
    assert logreg["linear.weight"].shape == (1, 13) and logreg["linear.weight"].dtype == np.float32
    mlp = build_model("mlp", 13, seed=0, hidden_sizes=[8, 4])
    assert list(get_weights(mlp)) == list(mlp.state_dict())
    assert [a.shape for a in get_weights(mlp).values()] == [(8, 13), (8,), (4, 8), (4,), (1, 4), (1,)]
    assert weight_spec(mlp)["layers.0.weight"] == ((8, 13), "float32")


def test_set_weights_round_trip_and_rejects_mismatch():
    model = build_model("mlp", 4, seed=0, hidden_sizes=[3])
    target = get_weights(build_model("mlp", 4, seed=5, hidden_sizes=[3]))
    set_weights(model, target)
    assert encode(get_weights(model)) == encode(target)
    with pytest.raises(DataError, match="shape"):
        set_weights(model, {**target, "layers.0.bias": np.zeros(4, np.float32)})
    with pytest.raises(DataError, match="missing"):
        set_weights(model, {"layers.0.weight": target["layers.0.weight"]})


def test_registry_adds_a_model_with_one_function():
    name = "test_only_tiny_linear"

    @register_model(name)
    def build_tiny(n_features, scale=1.0):
        return torch.nn.Sequential(torch.nn.Linear(n_features, 1))

    try:
        model = build_model(name, 3, seed=0)
        assert predict_with_weights(name, get_weights(model), np.zeros((2, 3))).shape == (2,)
        with pytest.raises(ConfigError, match="already registered"):
            register_model(name)(build_tiny)
    finally:
        MODEL_BUILDERS.pop(name)


def test_unknown_model_and_bad_parameters():
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("transformer", 3)
    with pytest.raises(ConfigError, match="hidden_sizes"):
        build_model("mlp", 3, hidden_sizes=[0])
    with pytest.raises(ConfigError, match="bad parameters"):
        build_model("logreg", 3, depth=2)


# -- training ------------------------------------------------------------------------------------


def test_training_lowers_the_local_loss_and_returns_a_delta():
    X, y = make_data()
    spec = make_spec()
    start = get_weights(build_model(spec, seed=0))
    result = train_local(start, X, y, spec, seed=1)
    assert result.num_samples == 120
    assert result.metrics["loss_after"] < 0.7 * result.metrics["loss_before"]
    assert result.metrics["accuracy_after"] > 0.85
    assert list(result.arrays) == list(start)
    assert all(result.arrays[k].shape == start[k].shape and result.arrays[k].dtype == np.float32 for k in start)
    # the delta applied to the start is the trained model: its loss is the reported loss_after
    trained = apply_update(start, result.arrays)
    p = np.clip(predict_with_weights(spec, trained, X), 1e-7, 1 - 1e-7)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss == pytest.approx(result.metrics["loss_after"], rel=1e-4)


def test_same_seed_gives_the_same_update_bytes():
    X, y = make_data()
    spec = make_spec(model="mlp")
    start = get_weights(build_model(spec, seed=0))
    first = train_local(start, X, y, spec, seed=7)
    second = train_local(start, X, y, spec, seed=7)
    other = train_local(start, X, y, spec, seed=8)
    assert encode(first.arrays) == encode(second.arrays)
    assert encode(first.arrays) != encode(other.arrays)


def test_training_leaves_the_global_torch_rng_alone():
    X, y = make_data()
    spec = make_spec()
    start = get_weights(build_model(spec, seed=0))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train_local(start, X, y, spec, seed=3)
    assert torch.equal(torch.rand(3), expected)


def test_epochs_and_steps_counts():
    X, y = make_data(n=50)
    spec = make_spec(local_epochs=3, batch_size=8)
    start = get_weights(build_model(spec, seed=0))
    assert train_local(start, X, y, spec, seed=0).metrics["steps"] == 3 * 7  # ceil(50 / 8) = 7 batches
    assert train_local(start, X, y, make_spec(local_steps=13), seed=0).metrics["steps"] == 13


def test_fedprox_term_keeps_the_update_small():
    X, y = make_data()
    spec = make_spec(lr=0.05, local_steps=100)
    start = get_weights(build_model(spec, seed=0))
    free = train_local(start, X, y, spec, seed=0)
    held = train_local(start, X, y, spec, seed=0, config={"fedprox_mu": 5.0})
    norm = lambda u: np.sqrt(sum(float((a**2).sum()) for a in u.values()))  # noqa: E731
    assert norm(held.arrays) < 0.5 * norm(free.arrays)
    zero = train_local(start, X, y, spec, seed=0, config={"fedprox_mu": 0.0})
    assert encode(zero.arrays) == encode(free.arrays)


def test_adam_optimizer_also_learns():
    X, y = make_data()
    spec = make_spec(optimizer="adam", lr=0.05)
    result = train_local(get_weights(build_model(spec, seed=0)), X, y, spec, seed=0)
    assert result.metrics["loss_after"] < result.metrics["loss_before"]


def test_config_overrides_are_validated():
    settings = TrainingSettings(local_steps=10)
    assert settings_with(settings, {"local_epochs": 2}).local_steps is None
    assert settings_with(settings, {"lr": 0.5}).lr == 0.5
    with pytest.raises(ConfigError, match="unknown training setting"):
        settings_with(settings, {"learning_rate": 0.5})


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.full((4, 5), np.nan, np.float32), np.zeros(4), "NaN"),
        (np.zeros((4, 5), np.float32), np.array([0, 1, 2, 0]), "0 or 1"),
        (np.zeros((4, 5), np.float32), np.zeros(3), "labels"),
        (np.zeros(5, np.float32), np.zeros(5), "2-D"),
        (np.zeros((0, 5), np.float32), np.zeros(0), "no training rows"),
    ],
)
def test_bad_local_data_is_rejected(X, y, message):
    spec = make_spec()
    with pytest.raises(DataError, match=message):
        train_local(get_weights(build_model(spec, seed=0)), X, y, spec)


def test_wrong_global_weights_are_rejected():
    X, y = make_data()
    spec = make_spec()
    with pytest.raises(DataError):
        train_local({"linear.weight": np.zeros((1, 3), np.float32), "linear.bias": np.zeros(1, np.float32)}, X, y, spec)


def test_divergence_is_a_node_error():
    X, y = make_data()
    X = X * 1e30
    spec = make_spec(lr=1e30, local_steps=20)
    with pytest.raises((NodeError, DataError)):
        train_local(get_weights(build_model(spec, seed=0)), X, y, spec)


@pytest.mark.parametrize(
    "settings",
    [
        {"optimizer": "sgd", "lr": 0.1},
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "fedprox_mu": 0.5},
        {"optimizer": "adam", "lr": 0.02, "weight_decay": 0.001, "fedprox_mu": 0.1},
    ],
    ids=["sgd", "sgd-momentum-decay-prox", "adam-decay-prox"],
)
def test_logreg_closed_form_matches_autograd(settings):
    """The fast logistic-regression loop takes the same steps as the generic autograd loop."""
    from node import training as nt

    X, y = make_data(n=37)
    spec = make_spec(local_steps=45, batch_size=4, **settings)
    fast = build_model(spec, seed=3)
    slow = build_model(spec, seed=3)
    # the proximal anchor differs from the start, as in Ditto's personal training
    anchor = [p.detach().clone() for p in build_model(spec, seed=4).parameters()]
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    assert nt._run_logreg_closed_form(fast, X, y, spec.training, anchor, seed=11) == 45
    assert nt._run_autograd(slow, X_t, y_t, spec.training, anchor, seed=11) == 45
    for name, value in get_weights(slow).items():
        np.testing.assert_allclose(get_weights(fast)[name], value, rtol=1e-4, atol=1e-5)
    assert not np.allclose(get_weights(fast)["linear.weight"], get_weights(build_model(spec, seed=3))["linear.weight"])  # it moved


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_proximal_anchor_pulls_toward_the_given_weights(model):
    """``anchor_weights``: training starts from one model and is held near another (Ditto)."""
    X, y = make_data()
    spec = make_spec(model=model, lr=0.05, local_steps=200)
    start = get_weights(build_model(spec, seed=0))
    anchor = get_weights(build_model(spec, seed=1))
    distance = lambda a, b: np.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a))  # noqa: E731
    held = train_local(start, X, y, spec, seed=0, config={"fedprox_mu": 5.0}, anchor_weights=anchor)
    free = train_local(start, X, y, spec, seed=0)
    held_weights = apply_update(start, held.arrays)
    assert distance(held_weights, anchor) < 0.5 * distance(apply_update(start, free.arrays), anchor)
    assert distance(held_weights, anchor) < distance(start, anchor)  # pulled from the start toward the anchor
    default = train_local(start, X, y, spec, seed=0, config={"fedprox_mu": 5.0}, anchor_weights=start)
    plain = train_local(start, X, y, spec, seed=0, config={"fedprox_mu": 5.0})
    assert encode(default.arrays) == encode(plain.arrays)
