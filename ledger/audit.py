"""The audit trail of a bounty, rebuilt from the chain's events alone (through the SQLite event index).

``trace`` reads a bounty's events from the index and returns its typed books (:class:`ledger.trace.BountyTrace`):
per round the model hashes, commitments, scores and credits; per institution its name and what it was credited and
claimed; and the money identity funded == credited + refunded + escrowed, optionally compared with the contract.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from web3 import Web3

from ledger.client import FedLedgerClient
from ledger.compile import load_artifact
from ledger.deployment import CONTRACTS, Deployment
from ledger.indexer import Db, events, sync
from ledger.trace import BountyTrace, build_trace


def default_index_path(deployment_path: str | Path | None) -> Path:
    """The index lives beside the deployment file: ``<deployment stem>.index.sqlite``."""
    from ledger.deployment import default_path

    path = Path(deployment_path) if deployment_path else default_path()
    return path.with_name(path.stem + ".index.sqlite")


def sync_index(w3: Web3, deployment: Deployment, db: str | Path) -> int:
    """Bring the index up to the chain's latest block (the ledger's and the revenue splitter's events); returns the
    number of new events."""
    return sync(w3, deployment, db, {name: load_artifact(name)["abi"] for name in CONTRACTS})


def institution_names(db: Db) -> dict[str, str]:
    """The latest name each institution joined with, by address."""
    return {r["args"]["institution"]: r["args"]["name"] for r in events(db, "InstitutionJoined")}


def trace(db: Db, bounty_id: int, client: FedLedgerClient | None = None) -> BountyTrace:
    """The timeline and books of ``bounty_id`` from the event index.

    Parameters
    ----------
    db : path or sqlite3.Connection
        A synced event index.
    bounty_id : int
        The bounty.
    client : FedLedgerClient, optional
        When given, ``books.matches_contract`` says whether the event-derived books equal the contract's counters.

    Raises
    ------
    ChainError
        When no bounty with this id was ever created.
    """
    report = build_trace(bounty_id, events(db, args={"bountyId": bounty_id}), institution_names(db))
    if client is None:
        return report
    return replace(report, books=replace(report.books, matches_contract=report.books.matches(client.bounty(bounty_id))))


def format_trace(report: BountyTrace) -> str:
    """The trace as text for a terminal: one line per event, then the books."""
    created = report.created
    lines = [f"bounty {report.bounty_id}  sponsor {created.sponsor}  aggregator {created.aggregator}  "
             f"rounds {created.num_rounds}"]
    for event in report.timeline:
        details = "  ".join(f"{k}={_short(v)}" for k, v in event.args.items() if k != "bountyId")
        lines.append(f"  block {event.block:>6}  {event.name:<18}  {details}")
    for r in report.rounds:
        if r.unscored:  # visible on chain whoever is to blame: a scorer's record names drops it could see
            lines.append(f"round {r.number}: committed but not scored: {', '.join(r.unscored)} (not uploaded, refused, "
                         "outside the task's bounds or dropped by the aggregator: its round record gives its reason)")
    lines.append("books: " + "  ".join(f"{k}={v}" for k, v in report.to_dict()["books"].items()))
    return "\n".join(lines)


def _short(value) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[:10] + "…" if text.startswith("0x") and len(text) == 66 else text
