"""Command output: ``--format json|text`` for every command that prints data."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def add_format_option(parser: argparse.ArgumentParser, default: str = "text") -> None:
    """Add ``--format json|text`` to a command that prints data."""
    parser.add_argument(
        "--format", choices=("text", "json"), default=default,
        help="output format: aligned text for people, JSON for scripts (default: %(default)s)",
    )


def _text(data: Any) -> str:
    if isinstance(data, dict):
        width = max((len(str(k)) for k in data), default=0)
        return "\n".join(f"{str(k).ljust(width)}  {_scalar(v)}" for k, v in data.items())
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        columns = list(dict.fromkeys(k for row in data for k in row))
        cells = [[_scalar(row.get(c, "")) for c in columns] for row in data]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(line.rstrip() for line in lines)
    if isinstance(data, list):
        return "\n".join(_scalar(v) for v in data)
    return _scalar(data)


def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def emit(data: Any, fmt: str = "text", *, text: Callable[[Any], str] | None = None, file=None) -> None:
    """Print command output as JSON (ints stay exact) or text (``text(data)`` or a generic layout).

    Parameters
    ----------
    data : Any
        JSON-serialisable result (a dict, or a list of dicts for a table).
    fmt : {"text", "json"}
        The ``--format`` value.
    text : callable, optional
        Custom text renderer.
    """
    out = file or sys.stdout
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=out)
    else:
        print((text or _text)(data), file=out)
