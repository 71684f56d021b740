"""The web explorer: bounties, rounds, commitments, scores, payouts and reputation, from the event index.

``fedledger explorer`` serves it alone; ``create_explorer_router`` lets another FastAPI app include it.
Attributes are imported lazily, so ``fedledger --help`` does not load FastAPI or web3.
"""

from __future__ import annotations

__all__ = ["ExplorerSource", "create_app", "create_explorer_router"]


def __getattr__(name: str):
    if name in __all__:
        from fedledger.explorer import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
