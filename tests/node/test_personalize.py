"""Personalized models and the tuned local-only baseline, trained for real on small data."""

import numpy as np
import pytest

from fedcore.codec import encode
from fedcore.models import build_model, get_weights, predict_with_weights
from fedcore.task import PersonalizationSettings, TaskSpec, TrainingSettings
from node import personalize as pz
from node.training import apply_update, train_local


def make_data(n, w, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(w))).astype(np.float32)
    y = (X @ np.asarray(w) + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return X, y


def make_spec(method="none", **personalization):
    return TaskSpec(
        name="synthetic",
        model="logreg",
        feature_columns=("a", "b", "c"),
        label_column="y",
        training=TrainingSettings(local_steps=30, batch_size=8, lr=0.1),
        personalization=PersonalizationSettings(method=method, **{"validation_splits": 2, **personalization}),
    )


def global_trajectory(spec, X, y, rounds=4):
    """Global models of a one-institution 'federation' on (X, y): w_1 (initial) .. w_R, and w_{R+1}."""
    weights = get_weights(build_model(spec, seed=0))
    trajectory = []
    for r in range(rounds):
        trajectory.append(weights)
        weights = apply_update(weights, train_local(weights, X, y, spec, seed=r).arrays)
    return trajectory, weights


def accuracy(model, X, y):
    return float(np.mean((model.predict(X) > 0.5) == (y > 0.5)))


def test_none_keeps_the_global_model():
    spec = make_spec()
    X, y = make_data(60, [1, -1, 0.5], seed=0)
    trajectory, final = global_trajectory(spec, X, y)
    model = pz.personalize(trajectory, final, X, y, spec, seed=0)
    assert encode(model.weights) == encode(final) and model.choice.label == "global model"


def test_ditto_follows_the_global_models_as_lambda_grows():
    spec = make_spec()
    X_global, y_global = make_data(80, [1, 1, 1], seed=1)
    X, y = make_data(60, [1, -1, -1], seed=2)  # a site whose rule differs from the federation's
    trajectory, _ = global_trajectory(spec, X_global, y_global)
    distance = lambda a, b: np.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a))  # noqa: E731
    loose = pz.ditto_personal(trajectory, X, y, spec, lam=0.0, seed=0)
    tight = pz.ditto_personal(trajectory, X, y, spec, lam=5.0, seed=0)
    assert distance(tight, trajectory[-1]) < 0.25 * distance(loose, trajectory[-1])
    arch = pz.architecture("logreg", {}, 3)
    local_acc = np.mean((predict_with_weights(arch, loose, X) > 0.5) == y)
    global_acc = np.mean((predict_with_weights(arch, trajectory[-1], X) > 0.5) == y)
    assert local_acc > global_acc + 0.2  # free of the global model, it fits its own rows
    assert encode(pz.ditto_personal(trajectory, X, y, spec, lam=0.3, seed=0)) == encode(
        pz.ditto_personal(trajectory, X, y, spec, lam=0.3, seed=0)
    )


@pytest.mark.parametrize("method", ["ditto", "finetune"])
def test_personalization_chooses_on_validation_and_beats_the_global_model_on_a_different_site(method):
    spec = make_spec(method, ditto_lambdas=[0.0, 5.0], finetune_steps=[0, 200], finetune_lrs=[0.1])
    X_global, y_global = make_data(80, [1, 1, 1], seed=1)
    X, y = make_data(120, [1, -1, -1], seed=2)
    X_test, y_test = make_data(200, [1, -1, -1], seed=3)
    trajectory, final = global_trajectory(spec, X_global, y_global)
    model = pz.personalize(trajectory, final, X, y, spec, seed=0)
    assert len(model.choice.validation_accuracy) == 2
    assert model.choice.index == int(np.argmax(model.choice.validation_accuracy)) == 0 if method == "ditto" else 1
    global_model = pz.PersonalModel("logreg", {}, final, pz.Choice(0, "global"))
    assert accuracy(model, X_test, y_test) > accuracy(global_model, X_test, y_test) + 0.2


def test_fine_tune_with_zero_steps_is_the_global_model():
    spec = make_spec()
    X, y = make_data(40, [1, 0, 0], seed=4)
    start = get_weights(build_model(spec, seed=0))
    assert encode(pz.fine_tune(start, X, y, spec, steps=0, lr=0.1, seed=0)) == encode(start)
    assert encode(pz.fine_tune(start, X, y, spec, steps=5, lr=0.1, seed=0)) != encode(start)


def test_choose_on_validation_takes_the_better_candidate_first_on_ties():
    X, y = make_data(50, [1, 0, 0], seed=5)
    carvings = pz.validation_splits(y, fraction=0.25, splits=3, seed=0)
    assert all(len(np.intersect1d(tr, val)) == 0 and len(tr) + len(val) == 50 for tr, val in carvings)
    right = lambda X_fit, y_fit: (lambda X_eval: (X_eval[:, 0] > 0).astype(float))  # noqa: E731
    wrong = lambda X_fit, y_fit: (lambda X_eval: (X_eval[:, 0] <= 0).astype(float))  # noqa: E731
    index, scores = pz.choose_on_validation([wrong, right, right], X, y, carvings=carvings)
    assert index == 1 and scores[0] < scores[1] == scores[2]


def test_local_only_baseline_is_tuned_over_families_and_beats_the_majority_class():
    spec = make_spec()
    X, y = make_data(120, [2, -1, 0], seed=6)
    X_test, y_test = make_data(200, [2, -1, 0], seed=7)
    candidates = [
        pz.LocalModelChoice("logreg", {}, TrainingSettings(local_steps=None, local_epochs=1, batch_size=60, lr=1e-4, optimizer="adam")),
        pz.LocalModelChoice("mlp", {"hidden_sizes": [4]}, TrainingSettings(local_steps=None, local_epochs=30, batch_size=8, lr=0.02, optimizer="adam")),
    ]
    model = pz.best_local_only(X, y, spec, seed=0, candidates=candidates)
    assert model.model == "mlp" and model.choice.index == 1  # the undertrained candidate loses on validation
    majority = pz.majority_class(y)
    assert accuracy(model, X_test, y_test) > float(np.mean(y_test == majority)) + 0.2
    assert len(pz.LOCAL_ONLY_CANDIDATES) == 39 and {c.model for c in pz.LOCAL_ONLY_CANDIDATES} == {"logreg", "mlp"}


def test_a_site_the_federation_does_not_help_keeps_its_local_only_model():
    # The federation learned the opposite rule (flipped labels); Ditto's only candidate is pulled hard toward it.
    spec = make_spec("ditto", ditto_lambdas=[5.0], local_candidate=True)
    X_global, y_global = make_data(120, [1, -1, 0.5], seed=8)
    X, y = make_data(80, [1, -1, 0.5], seed=9)
    X_test, y_test = make_data(300, [1, -1, 0.5], seed=10)
    trajectory, final = global_trajectory(spec, X_global, 1.0 - y_global)
    alone = pz.best_local_only(X, y, spec, seed=0)
    model = pz.personalize(trajectory, final, X, y, spec, seed=0)
    local_score, ditto_score = model.choice.validation_accuracy  # the local-only candidate first, then each lambda
    assert model.choice.index == 0 and local_score > ditto_score
    assert model.model == alone.model and encode(model.weights) == encode(alone.weights)
    assert model.choice.label == alone.choice.label and model.choice.label.startswith("local-only")
    assert accuracy(model, X_test, y_test) >= accuracy(alone, X_test, y_test) - 0.01
    without = pz.personalize(trajectory, final, X, y, make_spec("ditto", ditto_lambdas=[5.0]), seed=0)
    assert accuracy(without, X_test, y_test) < accuracy(model, X_test, y_test) - 0.2  # what the selection saved it from
    _, metrics = pz.held_out_gain(trajectory, final, X, y, spec, seed=0)
    assert metrics["gain"] == 0.0 and metrics["personalized_model"] == metrics["alone_model"]


def test_a_site_the_federation_helps_keeps_the_federated_candidate():
    # Few noisy local rows, a federation that learned the site's rule from many rows: Ditto wins on validation.
    spec = make_spec("ditto", ditto_lambdas=[5.0], local_candidate=True, validation_splits=3)
    X_global, y_global = make_data(400, [1, -1, 0.5], seed=11)
    rng = np.random.default_rng(12)
    X, y = make_data(24, [1, -1, 0.5], seed=12)
    y = np.where(rng.random(24) < 0.2, 1.0 - y, y).astype(np.float32)
    trajectory, final = global_trajectory(spec, X_global, y_global, rounds=6)
    model = pz.personalize(trajectory, final, X, y, spec, seed=0)
    local_score, ditto_score = model.choice.validation_accuracy
    assert model.choice.index == 1 and ditto_score > local_score and model.choice.label == "ditto lambda=5"
