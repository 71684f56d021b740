"""The sponsor's target population: the task's scaler, the group weights and the weighted utility (pure maths),
the spec fields that declare them, and the one validation-set reader."""

import math

import numpy as np
import pytest

from fedcore import metrics as fm
from fedcore.errors import ConfigError, DataError
from fedcore.population import (
    group_weights,
    load_validation_set,
    population_score,
    population_standard_error,
    scaler_from_rows,
)
from fedcore.tables import write_task_table
from fedcore.task import FeatureScaling, TargetPopulation, TaskSpec, task_hash

GROUPS = ("a", "a", "a", "a", "b", "b")
Y = np.array([1, 0, 1, 0, 1, 1], dtype=np.float32)
P = np.array([0.9, 0.2, 0.4, 0.1, 0.3, 0.8])  # group a: 3 of 4 right; group b: 1 of 2 right


def equal():
    return TargetPopulation(weighting="equal", group_column="site")


def spec(**changes):
    values = dict(name="t", model="logreg", feature_columns=("x1", "x2"), label_column="y")
    values.update(changes)
    return TaskSpec(**values)


# -- group weights ---------------------------------------------------------------------------------------


def test_pooled_has_no_group_weights():
    assert group_weights(GROUPS, TargetPopulation()) is None
    assert group_weights(None, TargetPopulation()) is None


def test_equal_gives_every_present_group_the_same_weight():
    assert group_weights(GROUPS, equal()) == {"a": 0.5, "b": 0.5}
    assert group_weights(("c", "a", "b", "c"), equal()) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_explicit_weights_are_normalized_over_the_present_groups():
    population = TargetPopulation(weighting="explicit", group_column="site", group_weights={"a": 1, "b": 3, "z": 0})
    assert group_weights(GROUPS, population) == {"a": 0.25, "b": 0.75}


@pytest.mark.parametrize("groups, population, message", [
    (None, equal(), "has no group column"),
    (("a", ""), equal(), "empty value"),
    (GROUPS, TargetPopulation(weighting="explicit", group_column="site", group_weights={"a": 1.0}),
     "group(s) b have no weight"),
    (GROUPS, TargetPopulation(weighting="explicit", group_column="site", group_weights={"a": 1, "b": 1, "c": 2}),
     "group(s) c have no validation rows"),
])
def test_group_weights_refuse_groups_that_do_not_fit(groups, population, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        group_weights(groups, population)


# -- the weighted utility ----------------------------------------------------------------------------------


def test_pooled_score_is_the_metric_over_all_rows():
    for metric in ("accuracy", "neg_loss", "auc"):
        assert population_score(metric, Y, P, GROUPS, None) == fm.score(metric, Y, P)
    assert population_score("accuracy", Y, P, None, None) == pytest.approx(4 / 6)


def test_equal_weighting_is_the_mean_over_groups():
    weights = group_weights(GROUPS, equal())
    assert population_score("accuracy", Y, P, GROUPS, weights) == pytest.approx(0.5 * 0.75 + 0.5 * 0.5)
    loss_a, loss_b = fm.log_loss(Y[:4], P[:4]), fm.log_loss(Y[4:], P[4:])
    assert population_score("neg_loss", Y, P, GROUPS, weights) == pytest.approx(-(loss_a + loss_b) / 2)
    # group b holds one class: its AUC is 0.5 (no skill), averaged with group a's
    assert population_score("auc", Y, P, GROUPS, weights) == pytest.approx((fm.auc(Y[:4], P[:4]) + 0.5) / 2)


def test_equal_accuracy_and_loss_are_row_weighted_metrics_with_weight_one_over_group_size():
    rng = np.random.default_rng(3)
    groups = tuple(rng.choice(["big", "small", "tiny"], size=200, p=[0.8, 0.15, 0.05]))
    y = rng.integers(0, 2, size=200).astype(np.float64)
    p = rng.uniform(0.01, 0.99, size=200)
    labels = np.asarray(groups)
    row_weight = np.array([1.0 / np.sum(labels == g) for g in groups])
    row_weight /= row_weight.sum()
    weights = group_weights(groups, equal())
    correct = ((p > 0.5) == (y == 1)).astype(float)
    assert population_score("accuracy", y, p, groups, weights) == pytest.approx(float(row_weight @ correct))
    losses = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    assert population_score("neg_loss", y, p, groups, weights) == pytest.approx(-float(row_weight @ losses))


def test_a_small_group_moves_the_equal_utility_more_than_the_pooled_one():
    """Improving the two rows of group b moves equal weighting by half a group, pooled by a third of the rows."""
    better = P.copy()
    better[4] = 0.9  # group b's wrong row becomes right
    weights = group_weights(GROUPS, equal())
    pooled_gain = population_score("accuracy", Y, better, GROUPS, None) - population_score("accuracy", Y, P, GROUPS, None)
    equal_gain = (population_score("accuracy", Y, better, GROUPS, weights)
                  - population_score("accuracy", Y, P, GROUPS, weights))
    assert pooled_gain == pytest.approx(1 / 6) and equal_gain == pytest.approx(1 / 4)


def test_group_count_mismatch_is_an_error():
    with pytest.raises(DataError, match="5 group values for 6"):
        population_score("accuracy", Y, P, GROUPS[:5], {"a": 1.0})


# -- the scaler ------------------------------------------------------------------------------------------


def test_scaler_is_the_rows_mean_and_sample_std_and_constant_columns_keep_scale_one():
    X = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    scaling = scaler_from_rows(X)
    assert scaling.mean == (3.0, 5.0, 5.0)
    assert scaling.std == pytest.approx((2.0, 1.0, float(np.std([2, 4, 9], ddof=1))))
    Z = scaling.transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z[:, 1], 0.0)
    assert "validation rows" in scaling.source


def test_identity_scaling_leaves_features_as_they_are():
    X = np.array([[1.5, -2.0]])
    np.testing.assert_array_equal(FeatureScaling().transform(X), X.astype(np.float32))
    with pytest.raises(ConfigError, match="2 features"):
        FeatureScaling(mean=(0, 0), std=(1, 1)).transform(np.ones((1, 3)))


# -- the spec fields --------------------------------------------------------------------------------------


def test_defaults_are_left_out_of_the_hash_and_declared_fields_round_trip(tmp_path):
    plain = spec()
    assert "scaling" not in plain.to_dict() and "population" not in plain.to_dict()
    declared = spec(scaling=FeatureScaling(mean=(1, 2), std=(3, 4), source="sponsor"),
                    population=TargetPopulation(weighting="explicit", group_column="site", group_weights={"b": 2, "a": 1}))
    assert task_hash(declared) != task_hash(plain)
    declared.save(tmp_path / "task.json")
    loaded = TaskSpec.load(tmp_path / "task.json")
    assert loaded == declared and task_hash(loaded) == task_hash(declared)
    assert loaded.scaling.mean == (1.0, 2.0) and dict(loaded.population.group_weights) == {"a": 1.0, "b": 2.0}
    assert task_hash(spec(population=equal())) != task_hash(plain)


@pytest.mark.parametrize("changes, message", [
    ({"scaling": FeatureScaling(mean=(0.0,), std=(1.0,))}, "task.scaling has 1 features"),
    ({"population": TargetPopulation(weighting="equal", group_column="x1")}, "is a feature or the label"),
])
def test_spec_refuses_fields_that_do_not_fit_its_columns(changes, message):
    with pytest.raises(ConfigError, match=message):
        spec(**changes)


@pytest.mark.parametrize("make, message", [
    (lambda: FeatureScaling(mean=(0.0,), std=(0.0,)), "std must hold numbers > 0"),
    (lambda: FeatureScaling(mean=(math.nan,), std=(1.0,)), "finite"),
    (lambda: FeatureScaling(mean=(0.0, 1.0), std=(1.0,)), "has 2 values"),
    (lambda: TargetPopulation(weighting="median"), "population.weighting must be one of"),
    (lambda: TargetPopulation(weighting="equal"), "needs population.group_column"),
    (lambda: TargetPopulation(weighting="explicit", group_column="g"), "exactly when"),
    (lambda: TargetPopulation(weighting="equal", group_column="g", group_weights={"a": 1}), "exactly when"),
    (lambda: TargetPopulation(weighting="explicit", group_column="g", group_weights={"a": -1}), ">= 0"),
    (lambda: TargetPopulation(weighting="explicit", group_column="g", group_weights={"a": 0}), "not all be 0"),
])
def test_malformed_fields_are_one_line_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_unknown_fields_in_json_are_refused():
    data = spec().to_dict()
    data["population"] = {"weighting": "pooled", "strata": "x"}
    with pytest.raises(ConfigError, match="unknown field"):
        TaskSpec.from_dict(data)


# -- the validation set, read once for every role -----------------------------------------------------------


def test_validation_set_is_scaled_by_the_task_and_carries_its_groups(tmp_path):
    path = tmp_path / "validation.csv"
    X = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    write_task_table(path, ("x1", "x2"), "y", X, np.array([1, 0, 1]), extra={"site": ["p", "q", "q"]})
    task = spec(scaling=scaler_from_rows(X), population=equal())
    validation = load_validation_set(path, task)
    np.testing.assert_allclose(validation.X, [[-1, -1], [0, 0], [1, 1]], atol=1e-6)
    assert validation.groups == ("p", "q", "q") and validation.weights == {"p": 0.5, "q": 0.5}
    assert len(validation) == 3 and validation.sha256 == __import__("hashlib").sha256(path.read_bytes()).digest()
    pooled = load_validation_set(path, spec())
    assert pooled.groups is None and pooled.weights is None
    np.testing.assert_array_equal(pooled.X, X.astype(np.float32))


def test_a_validation_set_without_the_declared_group_column_is_one_line(tmp_path):
    path = tmp_path / "validation.csv"
    write_task_table(path, ("x1", "x2"), "y", np.ones((2, 2)), np.array([1, 0]))
    with pytest.raises(DataError, match="missing column.*site"):
        load_validation_set(path, spec(population=equal()))


# -- the spread over the validation rows -----------------------------------------------------------------


@pytest.mark.parametrize("metric", fm.ROW_METRICS)
def test_row_scores_average_to_the_metric(metric):
    rows = fm.row_scores(metric, Y, P)
    assert rows.shape == Y.shape and math.fsum(rows) / len(rows) == pytest.approx(fm.score(metric, Y, P), abs=1e-15)
    weights = group_weights(GROUPS, equal())
    by_group = math.fsum(w * rows[np.asarray(GROUPS) == g].mean() for g, w in weights.items())
    assert by_group == pytest.approx(population_score(metric, Y, P, GROUPS, weights), abs=1e-15)


def test_auc_has_no_row_scores():
    with pytest.raises(DataError, match="not a mean over rows"):
        fm.row_scores("auc", Y, P)


def test_population_standard_error_pooled_and_stratified():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6))
    pooled = population_standard_error(x, None, None)
    np.testing.assert_allclose(pooled, x.std(axis=1, ddof=1) / math.sqrt(6), rtol=1e-12)
    weights = {"a": 0.25, "b": 0.75}
    a, b = np.asarray(GROUPS) == "a", np.asarray(GROUPS) == "b"
    expected = np.sqrt(0.25**2 * x[:, a].var(axis=1, ddof=1) / 4 + 0.75**2 * x[:, b].var(axis=1, ddof=1) / 2)
    np.testing.assert_allclose(population_standard_error(x, GROUPS, weights), expected, rtol=1e-12)
    # a constant quantity has no spread; a group of one row adds nothing (its variance is unknown)
    assert population_standard_error(np.ones((1, 6)), GROUPS, weights).tolist() == [0.0]
    single = ("a", "a", "a", "a", "a", "b")
    only_a = np.sqrt(0.25**2 * x[:, :5].var(axis=1, ddof=1) / 5)
    np.testing.assert_allclose(population_standard_error(x, single, weights), only_a, rtol=1e-12)
    with pytest.raises(DataError, match="finite"):
        population_standard_error(np.array([[np.nan] * 6]), None, None)
    with pytest.raises(DataError, match="group values"):
        population_standard_error(x, GROUPS[:3], weights)
