"""The wire format of updates and models: canonical safetensors bytes, never pickle.

``encode`` is a function of the arrays alone (a fixed tensor order: safetensors lays tensors out
widest dtype first, then by name; no metadata), so equal arrays give
equal bytes and :func:`update_hash` of those bytes is what an institution commits on chain.
``decode`` accepts only what ``encode`` could have produced and checks it against the expected
names, shapes and dtypes; anything else is a :class:`~fedcore.errors.CodecError` with one line.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _safetensors_load
from safetensors.numpy import save as _safetensors_save

from fedcore.errors import CodecError

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
HEADER_LIMIT = 1024 * 1024  # a header this large is an attack, not a model

# dtypes a model or update may carry; everything else (objects, strings) cannot be encoded.
ALLOWED_DTYPES = frozenset(
    np.dtype(name).name
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
)

Arrays = dict[str, np.ndarray]
Expected = Mapping[str, tuple[tuple[int, ...], str]]


def encode(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialize named arrays to canonical safetensors bytes.

    Parameters
    ----------
    arrays : Mapping[str, np.ndarray]
        Non-empty; names are non-empty strings; values finite numeric arrays of any shape.

    Returns
    -------
    bytes
        Tensors in the format's fixed order (widest dtype first, then by name; the insertion
        order of ``arrays`` does not matter), little-endian, C order, no ``__metadata__``.

    Raises
    ------
    CodecError
        Empty input, a non-string name, a non-numeric dtype, or NaN/Inf values.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise CodecError("nothing to encode: expected a non-empty mapping of name -> array")
    prepared: dict[str, np.ndarray] = {}
    for name in sorted(arrays, key=_name_key):
        array = np.asarray(arrays[name])
        if array.dtype.name not in ALLOWED_DTYPES:
            raise CodecError(f"tensor {name!r}: dtype {array.dtype} cannot be encoded")
        _check_finite(name, array)
        prepared[name] = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")  # keeps 0-d shapes
    return _safetensors_save(prepared)


def update_hash(data: bytes) -> bytes:
    """sha256 of the exact bytes, 32 bytes (the commitment that goes on chain)."""
    return hashlib.sha256(data).digest()


def update_hash_hex(data: bytes) -> str:
    """:func:`update_hash` as ``0x``-prefixed lowercase hex."""
    return "0x" + update_hash(data).hex()


def encoded_size(expected: Expected) -> int:
    """Bytes of the canonical encoding of any arrays matching ``expected`` (``{name: (shape, dtype name)}``).

    The canonical layout depends only on names, shapes and dtypes, so every valid update of a model has exactly
    this size: the aggregator refuses larger bodies before reading them.
    """
    return len(encode({name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in expected.items()}))


def describe(arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype name)}`` of reference arrays, the ``expected`` of :func:`decode`."""
    return {name: (tuple(np.shape(a)), np.asarray(a).dtype.name) for name, a in arrays.items()}


def decode(
    data: bytes,
    expected: Expected | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Arrays:
    """Parse and validate canonical safetensors bytes.

    Parameters
    ----------
    data : bytes
        The payload as received.
    expected : Mapping[str, (shape, dtype)], optional
        The exact names, shapes and dtype names the payload must carry (see :func:`describe`).
        ``None`` checks only format, canonical form and finiteness.
    max_bytes : int
        Payloads longer than this are refused before parsing.

    Returns
    -------
    dict[str, np.ndarray]
        Arrays by name, in sorted-name order.

    Raises
    ------
    CodecError
        Not bytes, oversized, not safetensors, not canonical (metadata, other order or padding),
        missing/extra names, wrong shapes or dtypes, NaN or Inf.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise CodecError(f"payload is {len(data)} bytes, over the limit of {max_bytes}")
    if len(data) < 8:
        raise CodecError("payload is not safetensors: shorter than its 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(HEADER_LIMIT, len(data) - 8):
        raise CodecError("payload is not safetensors: header length out of range")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (ValueError, UnicodeDecodeError):
        raise CodecError("payload is not safetensors: header is not JSON") from None
    if not isinstance(header, dict):
        raise CodecError("payload is not safetensors: header is not a JSON object")
    if "__metadata__" in header:
        raise CodecError("payload carries __metadata__; canonical payloads have none")
    try:
        arrays = _safetensors_load(data)
    except SafetensorError as error:
        raise CodecError(f"payload is not valid safetensors: {error}") from None
    except Exception as error:  # numpy refusing a dtype the format allows, e.g. F8
        raise CodecError(f"payload cannot be loaded: {error}") from None
    if not arrays:
        raise CodecError("payload holds no tensors")
    arrays = {name: arrays[name] for name in sorted(arrays, key=_name_key)}
    for name, array in arrays.items():
        if array.dtype.name not in ALLOWED_DTYPES:
            raise CodecError(f"tensor {name!r}: dtype {array.dtype} is not allowed")
    if expected is not None:
        _check_expected(arrays, expected)
    for name, array in arrays.items():
        _check_finite(name, array)
    # Equal arrays must mean equal bytes, or a copied update could hide behind a new hash.
    if _safetensors_save(arrays) != data:
        raise CodecError("payload is not in canonical form (tensor order, offsets or padding differ)")
    return arrays


def _check_expected(arrays: Arrays, expected: Expected) -> None:
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing:
        raise CodecError(f"payload is missing tensor(s) {', '.join(missing)}")
    if extra:
        raise CodecError(f"payload has unexpected tensor(s) {', '.join(extra)}")
    for name, (shape, dtype) in expected.items():
        array = arrays[name]
        if tuple(array.shape) != tuple(shape):
            raise CodecError(f"tensor {name!r} has shape {tuple(array.shape)}, expected {tuple(shape)}")
        if array.dtype != np.dtype(dtype):
            raise CodecError(f"tensor {name!r} has dtype {array.dtype.name}, expected {np.dtype(dtype).name}")


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        kind = "NaN" if np.isnan(array).any() else "Inf"
        raise CodecError(f"tensor {name!r} contains {kind}")


def _name_key(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise CodecError(f"tensor names must be non-empty strings, got {name!r}")
    return name
