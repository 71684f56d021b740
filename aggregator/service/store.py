"""Content-addressed files: every blob is stored under the sha256 of its bytes.

``<state-dir>/updates/<sha256 hex>`` holds uploaded updates, ``models/<hex>`` global models,
``states/<hex>`` server-optimizer states (all canonical safetensors). Writes are atomic (temporary file,
fsync, rename), so a crash leaves a blob whole or absent; the name is its hash, so a blob is never
rewritten with other bytes and reads can be checked.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from fedcore.errors import AggregatorError
from fedcore.files import write_atomic

KINDS = ("updates", "models", "states")
_HEX = re.compile(r"^(0x)?([0-9a-fA-F]{64})$")


def normalize_sha(value: str | bytes) -> str:
    """64 lowercase hex characters (no ``0x``) from 32 bytes or a (``0x``-prefixed) hex string.

    Raises
    ------
    AggregatorError
        When ``value`` is not a sha256.
    """
    if isinstance(value, bytes | bytearray):
        if len(value) != 32:
            raise AggregatorError(f"a sha256 is 32 bytes, got {len(value)}")
        return bytes(value).hex()
    match = _HEX.match(str(value).strip())
    if not match:
        raise AggregatorError(f"not a sha256 (64 hex digits): {str(value)[:80]!r}")
    return match.group(2).lower()


def sha_hex(data: bytes) -> str:
    """sha256 of ``data`` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Blobs by kind and sha256 under ``root``.

    Parameters
    ----------
    root : path
        The state directory; ``updates/``, ``models/`` and ``states/`` are created in it.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for kind in KINDS:
            (self.root / kind).mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, sha: str | bytes) -> Path:
        if kind not in KINDS:
            raise AggregatorError(f"unknown blob kind {kind!r}")
        return self.root / kind / normalize_sha(sha)

    def has(self, kind: str, sha: str | bytes) -> bool:
        return self.path(kind, sha).is_file()

    def put(self, kind: str, data: bytes) -> str:
        """Store ``data`` (idempotent); returns its sha256 hex."""
        sha = sha_hex(data)
        target = self.path(kind, sha)
        if target.is_file() and target.stat().st_size == len(data):
            return sha
        write_atomic(target, data)
        return sha

    def get(self, kind: str, sha: str | bytes, *, check: bool = True) -> bytes:
        """The blob's bytes.

        Raises
        ------
        AggregatorError
            When it is missing, or (``check``) its bytes no longer hash to its name.
        """
        path = self.path(kind, sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise AggregatorError(f"{kind} blob 0x{normalize_sha(sha)} is not in {self.root}") from None
        if check and sha_hex(data) != normalize_sha(sha):
            raise AggregatorError(f"{kind} blob {path} is corrupt: its bytes do not hash to its name")
        return data
