"""The in-process simulation runner and the evaluation metrics it reports."""

import numpy as np
import pytest

from aggregator.rules import resolve_rules
from fedcore import metrics as fm
from fedcore.codec import encode
from fedcore.errors import ConfigError, DataError
from fedcore.task import TaskSpec, TrainingSettings
from fedcore.types import Update
from fedledger.simulation import Institution, evaluate_federation, run_simulation, train_centralized
from node.partition import iid_partition
from node.training import apply_update

FEDAVG = resolve_rules(strategy="fedavg")


def synthetic_institutions(n_institutions=3, n=240, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ np.array([2.0, -1.5, 1.0, 0.5])[:d] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    institutions = []
    for k, rows in enumerate(iid_partition(n, n_institutions, seed=seed)):
        cut = int(0.7 * len(rows))
        institutions.append(
            Institution(f"site-{k}", X[rows[:cut]], y[rows[:cut]], X[rows[cut:]], y[rows[cut:]])
        )
    return institutions


def spec_for(d=4, **training):
    return TaskSpec(
        name="synthetic",
        model="logreg",
        feature_columns=tuple(f"x{i}" for i in range(d)),
        label_column="y",
        training=TrainingSettings(**{"local_steps": 20, "batch_size": 8, "lr": 0.05, **training}),
    )


def test_short_simulation_improves_on_the_initial_model():
    institutions = synthetic_institutions()
    result = run_simulation(institutions, spec_for(), FEDAVG, rounds=4, seed=1)
    start, end = result.history[0], result.history[-1]
    assert len(result.history) == 5 and len(result.rounds) == 4
    assert end["mean_center"]["loss"] < 0.7 * start["mean_center"]["loss"]
    assert end["mean_center"]["accuracy"] > start["mean_center"]["accuracy"] + 0.1
    assert end["mean_center"]["accuracy"] > 0.85
    assert set(end["centers"]) == {"site-0", "site-1", "site-2"}


def test_same_seed_same_bytes_other_seed_other_bytes():
    institutions = synthetic_institutions()
    runs = [run_simulation(institutions, spec_for(), resolve_rules(strategy="fedadam", strategy_params={"server_lr": 0.05}), rounds=3, seed=s) for s in (5, 5, 6)]
    assert encode(runs[0].final_weights) == encode(runs[1].final_weights)
    assert encode(runs[0].final_weights) != encode(runs[2].final_weights)


def test_round_records_hold_what_contribution_scoring_needs():
    institutions = synthetic_institutions()
    result = run_simulation(institutions, spec_for(), FEDAVG, rounds=3, seed=2)
    assert encode(result.rounds[0].global_weights) == encode(result.initial_weights)
    for record, following in zip(result.rounds, result.rounds[1:]):
        assert encode(following.global_weights) == encode(record.outcome.weights)
    for record in result.rounds:
        assert [u.institution for u in record.updates] == ["site-0", "site-1", "site-2"]
        assert [u.num_samples for u in record.updates] == [len(i.y_train) for i in institutions]
        # FedAvg closed form: new global = old global + sample-weighted mean delta
        counts = np.array([u.num_samples for u in record.updates], dtype=np.float64)
        for name in record.global_weights:
            mean_delta = sum(c * u.arrays[name].astype(np.float64) for c, u in zip(counts, record.updates)) / counts.sum()
            np.testing.assert_allclose(record.outcome.weights[name], record.global_weights[name] + mean_delta, rtol=1e-5, atol=1e-6)
    assert encode(result.final_weights) == encode(result.rounds[-1].outcome.weights)


def test_attackers_and_crashes_are_handled_as_data():
    institutions = synthetic_institutions(n_institutions=5)

    def behaviour(round_index, name, local):
        if name == "site-4":
            return None  # crashed
        if name == "site-3":  # sends a huge poisoned update
            return Update(name, {k: np.full_like(v, 1e3) for k, v in local.arrays.items()}, local.num_samples, local.metrics)
        return local

    seen = []
    result = run_simulation(
        institutions, spec_for(), resolve_rules(strategy="median"), rounds=3, seed=0, transform_update=behaviour, on_round=seen.append
    )
    assert [r.round for r in seen] == [1, 2, 3]
    assert all([f.institution for f in r.failures] == ["site-4"] for r in result.rounds)
    assert "site-4" in result.rounds[0].outcome.excluded
    assert result.final["mean_center"]["accuracy"] > 0.8  # median shrugs off the poisoned update
    poisoned = run_simulation(institutions, spec_for(), FEDAVG, rounds=1, seed=0, transform_update=behaviour)
    assert np.abs(poisoned.final_weights["linear.weight"]).max() > 100  # FedAvg does not


def test_evaluate_federation_reports_centers_mean_and_extra_sets():
    institutions = synthetic_institutions()
    spec = spec_for()
    weights = train_centralized(institutions[0].X_train, institutions[0].y_train, spec.with_training(local_steps=None, local_epochs=5), seed=0)
    X_all = np.concatenate([i.X_test for i in institutions])
    y_all = np.concatenate([i.y_test for i in institutions])
    report = evaluate_federation(spec, weights, institutions, {"pooled": (X_all, y_all)})
    accuracies = [report["centers"][i.name]["accuracy"] for i in institutions]
    assert report["mean_center"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert report["pooled"]["accuracy"] == pytest.approx(report["all_test_rows"]["accuracy"])
    assert report["mean_center"]["accuracy"] > 0.8


def test_run_simulation_argument_checks():
    institutions = synthetic_institutions()
    with pytest.raises(ConfigError, match="unique"):
        run_simulation(institutions + institutions[:1], spec_for(), FEDAVG, rounds=1, seed=0)
    with pytest.raises(ConfigError, match="rounds"):
        run_simulation(institutions, spec_for(), FEDAVG, rounds=-1, seed=0)


def test_heart_disease_federation_learns():
    from fedsets.heart import load_fed_heart_disease

    institutions = [Institution.from_site(s) for s in load_fed_heart_disease()]
    spec = TaskSpec(
        name="heart", model="logreg", feature_columns=tuple(f"f{i}" for i in range(13)), label_column="num",
        training=TrainingSettings(local_steps=30, batch_size=4, lr=0.01),
    )  # fmt: skip
    result = run_simulation(institutions, spec, FEDAVG, rounds=3, seed=42, keep_records=False, evaluate_every_round=False)
    assert len(result.history) == 2 and result.rounds == []
    assert result.final["mean_center"]["loss"] < result.history[0]["mean_center"]["loss"]
    assert result.final["mean_center"]["accuracy"] > 0.65


# -- metrics -------------------------------------------------------------------------------------


def test_accuracy_closed_form():
    y = np.array([1, 0, 1, 0])
    assert fm.accuracy(y, np.array([0.9, 0.1, 0.6, 0.4])) == 1.0
    assert fm.accuracy(y, np.array([0.9, 0.9, 0.4, 0.4])) == 0.5
    assert fm.accuracy(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # 0.5 is not > 0.5: predicts 0


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.round(rng.random(60), 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    pairwise = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert fm.auc(y, p) == pytest.approx(pairwise)
    assert fm.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert fm.auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert fm.auc([1, 1], [0.3, 0.4]) == 0.5


def test_log_loss_and_score_dispatch():
    assert fm.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert np.isfinite(fm.log_loss([1, 0], [0.0, 1.0]))  # clipped, not infinite
    assert fm.score("neg_loss", [1, 0], [0.5, 0.5]) == pytest.approx(-np.log(2))
    assert fm.score("accuracy", [1, 0], [0.7, 0.2]) == 1.0
    assert set(fm.all_metrics([1, 0], [0.7, 0.2])) == {"accuracy", "auc", "loss"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fm.accuracy([1, 0], [0.5]), "labels have 2"),
        (lambda: fm.accuracy([], []), "empty"),
        (lambda: fm.auc([0, 2], [0.1, 0.2]), "0 or 1"),
        (lambda: fm.log_loss([0, 1], [np.nan, 0.2]), "NaN"),
        (lambda: fm.score("f1", [0, 1], [0.1, 0.2]), "unknown metric"),
    ],
)
def test_metric_input_errors(call, message):
    with pytest.raises(DataError, match=message):
        call()


def test_apply_update_is_the_inverse_of_a_delta():
    a = {"w": np.array([1.0, 2.0], np.float32)}
    d = {"w": np.array([0.5, -1.0], np.float32)}
    np.testing.assert_array_equal(apply_update(a, d)["w"], [1.5, 1.0])
    with pytest.raises(DataError):
        apply_update(a, {"v": d["w"]})
