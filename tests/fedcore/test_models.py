"""The model zoo's FENDA model: shapes, which parameters a federation shares, codec round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedcore.codec import decode, encode
from fedcore.errors import ConfigError
from fedcore.models import build_model, get_weights, predict_with_weights, shared_names, weight_spec


def test_fenda_maps_rows_to_one_logit_through_two_extractors():
    model = build_model("fenda", 13, seed=0, hidden_size=8)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert shapes == {
        "shared.0.weight": (8, 13), "shared.0.bias": (8,),
        "local.0.weight": (8, 13), "local.0.bias": (8,),
        "head.weight": (1, 16), "head.bias": (1,),
    }
    assert model(torch.zeros(5, 13)).shape == (5, 1)


def test_only_the_shared_extractor_is_shared_and_other_models_share_everything():
    fenda = build_model("fenda", 13, seed=0)
    assert shared_names(fenda) == ("shared.0.weight", "shared.0.bias")
    mlp = build_model("mlp", 13, seed=0, hidden_sizes=[16])
    assert shared_names(mlp) == tuple(mlp.state_dict())
    assert shared_names(build_model("logreg", 13, seed=0)) == ("linear.weight", "linear.bias")


def test_the_local_branch_changes_the_prediction():
    model = build_model("fenda", 13, seed=0)
    weights = get_weights(model)
    X = np.random.default_rng(0).normal(size=(20, 13)).astype(np.float32)
    other = dict(weights, **{"local.0.weight": weights["local.0.weight"] + 1.0})
    assert not np.allclose(predict_with_weights("fenda", weights, X), predict_with_weights("fenda", other, X))


def test_fenda_weights_and_shared_part_round_trip_the_codec():
    model = build_model("fenda", 13, seed=3)
    weights = get_weights(model)
    decoded = decode(encode(weights), expected=weight_spec(model))
    assert set(decoded) == set(weights)
    for name, array in weights.items():
        np.testing.assert_array_equal(decoded[name], array)
    shared = {name: weights[name] for name in shared_names(model)}
    assert set(decode(encode(shared))) == set(shared)


def test_fenda_initialization_depends_on_the_seed_only():
    a, b, c = (get_weights(build_model("fenda", 13, seed=s)) for s in (1, 1, 2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("hidden_size", [0, -1, 2.5])
def test_bad_hidden_size_is_a_config_error(hidden_size):
    with pytest.raises(ConfigError, match="fenda.hidden_size"):
        build_model("fenda", 13, seed=0, hidden_size=hidden_size)
