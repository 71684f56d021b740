"""Domain types every layer shares: an institution's update and a sha256 digest."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Update:
    """One institution's contribution to one round.

    Attributes
    ----------
    institution : str
        Its stable id (checksum address in a deployment, a site name in a simulation).
    arrays : Mapping[str, np.ndarray]
        The delta ``w_local - w_global``: float32, the global model's tensor names and shapes.
    num_samples : int
        Training rows it declares (FedAvg's weight; committed on chain in a deployment).
    metrics : Mapping[str, float]
        Training aggregates (losses, steps); never records.
    """

    institution: str
    arrays: Mapping[str, np.ndarray]
    num_samples: int
    metrics: Mapping[str, float] = field(default_factory=dict)


class Digest(bytes):
    """A 32-byte sha256. Printed one way everywhere: ``0x`` and 64 lowercase hex digits."""

    def __new__(cls, value: bytes | str) -> Digest:
        if isinstance(value, str):
            text = value[2:] if value[:2].lower() == "0x" else value
            try:
                value = bytes.fromhex(text)
            except ValueError:
                raise ValueError(f"not a hex digest: {value!r}") from None
        if len(value) != 32:
            raise ValueError(f"a digest is 32 bytes, got {len(value)}")
        return super().__new__(cls, value)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The sha256 of ``data``."""
        return cls(hashlib.sha256(data).digest())

    @property
    def bare(self) -> str:
        """64 hex digits without the prefix (file names, content addresses)."""
        return bytes.hex(self)

    def __str__(self) -> str:
        return "0x" + bytes.hex(self)

    def __repr__(self) -> str:
        return f"Digest({str(self)!r})"


def copy_arrays(arrays: Mapping[str, np.ndarray]) -> Arrays:
    """Private float32 copies, so nobody's arrays are changed behind their back."""
    return {name: np.array(array, dtype=np.float32, copy=True) for name, array in arrays.items()}
