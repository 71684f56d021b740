"""TaskSpec: JSON load/save, canonical hash, clear errors on malformed specs."""

import dataclasses
import hashlib
import json
import pickle

import pytest

from fedcore.errors import ConfigError
from fedcore.task import (
    PersonalizationSettings,
    TaskSpec,
    TrainingSettings,
    canonical_json,
    task_hash,
    task_hash_hex,
)

FEATURES = ("age", "sex", "chol")


def make_spec(**changes):
    values = dict(
        name="heart",
        model="mlp",
        model_params={"hidden_sizes": [8, 4]},
        feature_columns=FEATURES,
        label_column="num",
        metric="auc",
        training=TrainingSettings(local_steps=50, batch_size=8, lr=0.01, optimizer="adam", fedprox_mu=0.1, seed=7),
    )
    values.update(changes)
    return TaskSpec(**values)


def test_save_load_round_trip(tmp_path):
    spec = make_spec()
    path = tmp_path / "task.json"
    spec.save(path)
    loaded = TaskSpec.load(path)
    assert loaded == spec
    assert task_hash(loaded) == task_hash(spec)
    assert loaded.training.optimizer == "adam" and loaded.model_params["hidden_sizes"] == (8, 4)


def test_canonical_json_is_sorted_and_compact():
    text = canonical_json(make_spec())
    assert " " not in text and "\n" not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert list(data["training"]) == sorted(data["training"])
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"))


def test_task_hash_is_sha256_of_canonical_json():
    spec = make_spec()
    digest = task_hash(spec)
    assert isinstance(digest, bytes) and len(digest) == 32
    assert digest == hashlib.sha256(canonical_json(spec).encode()).digest()
    assert task_hash_hex(spec) == "0x" + digest.hex()


def test_hash_ignores_file_layout_and_key_order():
    spec = make_spec()
    data = spec.to_dict()
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=4)
    assert task_hash(TaskSpec.from_json(shuffled)) == task_hash(spec)


def test_integer_and_float_learning_rates_hash_the_same():
    a = make_spec(training=TrainingSettings(lr=1))
    b = make_spec(training=TrainingSettings(lr=1.0))
    assert task_hash(a) == task_hash(b)


@pytest.mark.parametrize(
    "change",
    [
        {"metric": "accuracy"},
        {"feature_columns": ("sex", "age", "chol")},
        {"model_params": {"hidden_sizes": [8]}},
        {"training": TrainingSettings(local_steps=50, batch_size=8, lr=0.01, optimizer="adam", fedprox_mu=0.1, seed=8)},
    ],
)
def test_any_change_changes_the_hash(change):
    assert task_hash(make_spec(**change)) != task_hash(make_spec())


def test_spec_is_immutable():
    spec = make_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.metric = "accuracy"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.model_params["hidden_sizes"] = [1]  # type: ignore[index]
    assert isinstance(spec.feature_columns, tuple)
    assert hash(spec) == hash(make_spec())


def test_a_spec_with_nested_parameters_crosses_a_process_boundary_unchanged_and_still_immutable():
    spec = make_spec()
    assert spec.model_params  # nested: {"hidden_sizes": (...)}
    copy = pickle.loads(pickle.dumps(spec))  # noqa: S301 - our own bytes
    assert copy == spec and task_hash(copy) == task_hash(spec)
    with pytest.raises(TypeError):
        copy.model_params["hidden_sizes"] = [1]  # type: ignore[index]


def test_with_training_changes_only_training():
    spec = make_spec()
    faster = spec.with_training(lr=0.5)
    assert faster.training.lr == 0.5 and faster.training.local_steps == 50
    assert faster.model == spec.model and spec.training.lr == 0.01


def test_missing_field_is_named():
    data = make_spec().to_dict()
    del data["label_column"]
    with pytest.raises(ConfigError, match="missing field.*label_column"):
        TaskSpec.from_dict(data)


def test_unknown_field_is_named():
    data = make_spec().to_dict()
    data["training"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match="unknown field.*learning_rate"):
        TaskSpec.from_dict(data)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"name": NaN}', ""])
def test_malformed_json_is_a_config_error(text):
    with pytest.raises(ConfigError):
        TaskSpec.from_json(text)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metric": "f1"}, "metric"),
        ({"feature_columns": ()}, "feature_columns"),
        ({"feature_columns": ("a", "a")}, "duplicates"),
        ({"feature_columns": "age"}, "list of strings"),
        ({"label_column": "age"}, "also a feature"),
        ({"model_params": {"f": float("nan")}}, "JSON"),
    ],
)
def test_invalid_values_are_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        make_spec(**change)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"local_steps": 10, "local_epochs": 2}, "exactly one"),
        ({"local_steps": None}, "exactly one"),
        ({"local_steps": 0}, "positive"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"lr": 0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"fedprox_mu": float("inf")}, "fedprox_mu"),
        ({"seed": -1}, "seed"),
        ({"local_steps": True}, "local_steps"),
    ],
)
def test_invalid_training_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainingSettings(**settings)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        TaskSpec.load(tmp_path / "absent.json")


# -- personalization ---------------------------------------------------------------------------------


def test_default_personalization_is_left_out_so_older_specs_keep_their_hash():
    spec = make_spec()
    assert "personalization" not in spec.to_dict()
    assert task_hash(TaskSpec.from_dict(spec.to_dict())) == task_hash(spec)  # a file written before the field
    explicit_default = make_spec(personalization=PersonalizationSettings(method="none"))
    assert task_hash(explicit_default) == task_hash(spec)


def test_personalization_is_part_of_the_hash_and_round_trips(tmp_path):
    ditto = make_spec(personalization=PersonalizationSettings(method="ditto", ditto_lambdas=[0.1, 1]))
    assert task_hash(ditto) != task_hash(make_spec())
    assert task_hash(ditto) != task_hash(make_spec(personalization=PersonalizationSettings(method="ditto")))
    ditto.save(tmp_path / "task.json")
    loaded = TaskSpec.load(tmp_path / "task.json")
    assert loaded == ditto and task_hash(loaded) == task_hash(ditto)
    assert loaded.personalization.ditto_lambdas == (0.1, 1.0)
    assert json.loads(canonical_json(ditto))["personalization"]["method"] == "ditto"


def test_local_candidate_is_hashed_only_when_set():
    ditto = make_spec(personalization=PersonalizationSettings(method="ditto"))
    assert "local_candidate" not in ditto.to_dict()["personalization"]  # ditto specs written before it keep their hash
    selecting = make_spec(personalization=PersonalizationSettings(method="ditto", local_candidate=True))
    assert selecting.to_dict()["personalization"]["local_candidate"] is True
    assert task_hash(selecting) != task_hash(ditto)
    assert TaskSpec.from_dict(selecting.to_dict()) == selecting


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"method": "fenda"}, "personalization.method"),
        ({"local_candidate": 1}, "local_candidate"),
        ({"ditto_lambdas": []}, "ditto_lambdas"),
        ({"ditto_lambdas": [-1.0]}, "ditto_lambdas"),
        ({"finetune_steps": [1.5]}, "finetune_steps"),
        ({"finetune_lrs": [0.0]}, "finetune_lrs"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_splits": 0}, "validation_splits"),
    ],
)
def test_bad_personalization_is_a_config_error(fields, message):
    with pytest.raises(ConfigError, match=message):
        PersonalizationSettings(**fields)


def test_unknown_personalization_field_is_rejected():
    data = make_spec().to_dict()
    data["personalization"] = {"method": "ditto", "alpha": 0.5}
    with pytest.raises(ConfigError, match="unknown field"):
        TaskSpec.from_dict(data)


# -- privacy -----------------------------------------------------------------------------------------


def test_no_privacy_is_left_out_so_older_specs_keep_their_hash():
    from fedcore.task import PrivacySettings

    spec = make_spec()
    assert "privacy" not in spec.to_dict()
    assert task_hash(make_spec(privacy=PrivacySettings())) == task_hash(spec)


def test_privacy_is_part_of_the_hash_and_round_trips(tmp_path):
    from fedcore.task import PrivacySettings

    private = make_spec(privacy=PrivacySettings(epsilon=1, delta=1e-4, max_grad_norm=2, rounds=15))
    assert task_hash(private) != task_hash(make_spec())
    assert task_hash(private) != task_hash(make_spec(privacy=PrivacySettings(epsilon=10, delta=1e-4, max_grad_norm=2, rounds=15)))
    private.save(tmp_path / "task.json")
    loaded = TaskSpec.load(tmp_path / "task.json")
    assert loaded == private and task_hash(loaded) == task_hash(private)
    assert loaded.privacy.epsilon == 1.0 and loaded.privacy.enabled


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"epsilon": 0}, "privacy.epsilon"),
        ({"epsilon": float("inf")}, "privacy.epsilon"),
        ({"epsilon": 1, "delta": 1.0}, "privacy.delta"),
        ({"epsilon": 1, "max_grad_norm": -1}, "privacy.max_grad_norm"),
        ({"epsilon": 1, "rounds": 0}, "privacy.rounds"),
    ],
)
def test_bad_privacy_is_a_config_error(fields, message):
    from fedcore.task import PrivacySettings

    with pytest.raises(ConfigError, match=message):
        PrivacySettings(**fields)
    data = make_spec().to_dict()
    data["privacy"] = fields
    with pytest.raises(ConfigError, match=message):
        TaskSpec.from_dict(data)
