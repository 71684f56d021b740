"""Hashed JSON documents (task specs, round rules): one canonical form, one strict parser, one file format.

A document's identity is the sha256 of its canonical JSON (sorted keys, no whitespace, no NaN or Infinity), so
equal documents hash the same on every machine whatever the file's layout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from fedcore.errors import ConfigError


def canonical(data: Any) -> str:
    """Sorted keys, no whitespace, no NaN: equal documents give equal strings."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(data: Any) -> bytes:
    """sha256 of :func:`canonical`, 32 bytes."""
    return hashlib.sha256(canonical(data).encode("utf-8")).digest()


def parse(text: str | bytes, what: str) -> Any:
    """Strict JSON (NaN and Infinity refused); a ConfigError naming ``what`` otherwise."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"{what} is not valid JSON: {error}") from None


def read(path: str | Path, what: str) -> Any:
    """Parse the JSON file at ``path`` (UTF-8, with or without a byte-order mark)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    return parse(text, what)


def write_pretty(path: str | Path, data: Any) -> None:
    """Pretty-printed, sorted JSON (the hash does not depend on the layout)."""
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_keys(where: str, data: Mapping[str, Any], cls: type, *, all_required: bool = False) -> None:
    """Refuse missing and unknown fields of dataclass ``cls`` in ``data`` (``all_required``: defaults count too)."""
    known = {f.name for f in fields(cls)}
    required = known if all_required else {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")


def thaw(value: Any) -> Any:
    """Plain dicts and lists from any mappings and sequences (tuples included)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


class HashedDocument:
    """JSON text, files and hash for a frozen dataclass that defines ``to_dict``/``from_dict`` and ``DOCUMENT`` (its
    name in error messages). Task specs and round rules share this one way of being read, written and hashed."""

    DOCUMENT: ClassVar[str] = "document"

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        raise NotImplementedError

    def to_json(self) -> str:
        """Canonical JSON: what :meth:`digest` hashes."""
        return canonical(self.to_dict())

    def digest(self) -> bytes:
        """sha256 of the canonical JSON, 32 bytes (the hash that goes on chain)."""
        return digest(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.from_dict(parse(text, cls.DOCUMENT))

    def save(self, path: str | Path) -> None:
        """Write pretty-printed JSON (the hash does not depend on the layout)."""
        write_pretty(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_dict(read(path, cls.DOCUMENT))
