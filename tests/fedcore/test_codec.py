"""The update codec: canonical safetensors bytes, sha256 commitments, strict decoding."""

import hashlib
import json
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import load as raw_load
from safetensors.numpy import save as raw_save

from fedcore.codec import DEFAULT_MAX_BYTES, decode, describe, encode, update_hash, update_hash_hex
from fedcore.errors import CodecError, DataError


def sample_arrays():
    return {
        "linear.weight": np.arange(13, dtype=np.float32).reshape(1, 13) / 7,
        "linear.bias": np.array([0.25], dtype=np.float32),
    }


def test_round_trip_keeps_names_values_shapes_and_dtypes():
    arrays = sample_arrays()
    decoded = decode(encode(arrays), describe(arrays))
    assert set(decoded) == set(arrays)
    for name, array in arrays.items():
        assert decoded[name].dtype == array.dtype
        np.testing.assert_array_equal(decoded[name], array)


def test_equal_arrays_give_equal_bytes_whatever_the_insertion_order():
    arrays = sample_arrays()
    reordered = dict(reversed(list(arrays.items())))
    copied = {k: v.copy(order="F") for k, v in arrays.items()}
    assert encode(arrays) == encode(reordered) == encode(copied)


def test_one_changed_value_changes_the_hash():
    arrays = sample_arrays()
    changed = dict(arrays, **{"linear.bias": np.array([0.2500001], dtype=np.float32)})
    assert update_hash(encode(arrays)) != update_hash(encode(changed))


def test_update_hash_is_sha256_of_the_exact_bytes():
    data = encode(sample_arrays())
    assert update_hash(data) == hashlib.sha256(data).digest()
    assert len(update_hash(data)) == 32
    assert update_hash_hex(data) == "0x" + hashlib.sha256(data).hexdigest()


def test_no_metadata_and_no_pickle_in_the_bytes():
    data = encode(sample_arrays())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert "__metadata__" not in header
    assert set(header) == {"linear.weight", "linear.bias"}


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=st.floats(-1e6, 1e6, width=32)),
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=2, max_side=4), elements=st.floats(-1e6, 1e6)),
)
def test_property_round_trip_and_stable_hash(a, b):
    arrays = {"a": a, "b": b}
    data = encode(arrays)
    decoded = decode(data, describe(arrays))
    np.testing.assert_array_equal(decoded["a"], a)
    np.testing.assert_array_equal(decoded["b"], b)
    assert encode(decoded) == data


# -- rejections ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"short",
        b"\xff" * 64,
        pickle.dumps({"linear.weight": [1.0, 2.0]}),
        struct.pack("<Q", 10) + b"not json!!",
        struct.pack("<Q", 2) + b"[]",
    ],
    ids=["empty", "short", "garbage", "pickle", "bad-json-header", "header-not-object"],
)
def test_non_safetensors_bytes_are_rejected(payload):
    with pytest.raises(CodecError, match="not safetensors|not valid safetensors"):
        decode(payload)


def test_truncated_payload_is_rejected():
    data = encode(sample_arrays())
    with pytest.raises(CodecError):
        decode(data[:-4])


def test_oversized_payload_is_rejected_before_parsing():
    data = encode(sample_arrays())
    with pytest.raises(CodecError, match="over the limit"):
        decode(data, max_bytes=len(data) - 1)
    assert decode(data, max_bytes=len(data))  # exactly at the limit is fine
    assert DEFAULT_MAX_BYTES >= 1024 * 1024


def test_missing_tensor_is_rejected():
    arrays = sample_arrays()
    expected = describe(arrays)
    with pytest.raises(CodecError, match="missing tensor.*linear.bias"):
        decode(encode({"linear.weight": arrays["linear.weight"]}), expected)


def test_extra_tensor_is_rejected():
    arrays = sample_arrays()
    expected = describe(arrays)
    with pytest.raises(CodecError, match="unexpected tensor.*extra"):
        decode(encode({**arrays, "extra": np.zeros(2, np.float32)}), expected)


def test_wrong_shape_is_rejected():
    arrays = sample_arrays()
    expected = describe(arrays)
    with pytest.raises(CodecError, match="shape"):
        decode(encode({**arrays, "linear.weight": np.zeros((13, 1), np.float32)}), expected)


def test_wrong_dtype_is_rejected():
    arrays = sample_arrays()
    expected = describe(arrays)
    with pytest.raises(CodecError, match="dtype float64, expected float32"):
        decode(encode({**arrays, "linear.bias": np.array([0.25], np.float64)}), expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected(bad):
    arrays = sample_arrays()
    arrays["linear.weight"][0, 3] = bad
    payload = raw_save(arrays)  # a foreign encoder that lets non-finite values through
    with pytest.raises(CodecError, match="NaN|Inf"):
        decode(payload)
    with pytest.raises(CodecError, match="NaN|Inf"):
        encode(arrays)


def test_metadata_is_rejected():
    payload = raw_save(sample_arrays(), metadata={"note": "hello"})
    with pytest.raises(CodecError, match="__metadata__"):
        decode(payload)


def test_non_canonical_layout_is_rejected():
    """Same tensors, different bytes (extra header whitespace): would dodge copy detection."""
    data = encode(sample_arrays())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + header_len].rstrip(b" ")
    padded = header + b" " * (header_len - len(header) + 8)
    payload = struct.pack("<Q", len(padded)) + padded + data[8 + header_len :]
    loaded = raw_load(payload)  # the format itself accepts it...
    np.testing.assert_array_equal(loaded["linear.bias"], sample_arrays()["linear.bias"])
    with pytest.raises(CodecError, match="canonical"):
        decode(payload)


def test_encode_rejects_bad_input():
    with pytest.raises(CodecError, match="non-empty"):
        encode({})
    with pytest.raises(CodecError, match="dtype"):
        encode({"a": np.array(["x"], dtype=object)})
    with pytest.raises(CodecError, match="names"):
        encode({"": np.zeros(1, np.float32)})


def test_codec_error_is_a_data_error_with_one_line():
    with pytest.raises(DataError) as info:
        decode(b"\x00" * 3)
    assert "\n" not in str(info.value)


def test_decode_rejects_non_bytes():
    with pytest.raises(CodecError, match="bytes"):
        decode("a string")  # type: ignore[arg-type]
