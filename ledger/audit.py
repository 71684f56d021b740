"""The audit trail of a bounty, rebuilt from the chain's events alone (through the SQLite event index).

``trace`` returns every event of a bounty in chain order plus a summary: per round the model hashes,
commitments, scores and credits; per institution what it was credited and claimed; and the money
identity funded == credited + refunded + escrowed, recomputed from events and compared with the contract.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from web3 import Web3

from fedcore.errors import ChainError
from ledger.client import FedLedgerClient
from ledger.compile import load_artifact
from ledger.deployment import CONTRACTS, Deployment
from ledger.indexer import Db, events, sync

# Which argument of an event adds to the bounty's funded or refunded total.
_FUNDED = {"BountyFunded": "amount"}
_REFUNDED = {"BountyCancelled": "refunded", "RemainderRefunded": "amount"}


def default_index_path(deployment_path: str | Path | None) -> Path:
    """The index lives beside the deployment file: ``<deployment stem>.index.sqlite``."""
    from ledger.deployment import default_path

    path = Path(deployment_path) if deployment_path else default_path()
    return path.with_name(path.stem + ".index.sqlite")


def sync_index(w3: Web3, deployment: Deployment, db: str | Path) -> int:
    """Bring the index up to the chain's latest block (the ledger's and the revenue splitter's events); returns the
    number of new events."""
    return sync(w3, deployment, db, {name: load_artifact(name)["abi"] for name in CONTRACTS})


def _hex(value) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def trace(db: Db, bounty_id: int, client: FedLedgerClient | None = None) -> dict:
    """The timeline and books of ``bounty_id`` from the event index.

    Parameters
    ----------
    db : path or sqlite3.Connection
        A synced event index.
    bounty_id : int
        The bounty.
    client : FedLedgerClient, optional
        When given, the event-derived books are compared with the contract's own counters.

    Returns
    -------
    dict
        ``{"bounty_id", "created", "timeline": [...], "rounds": [...], "institutions": {...}, "books": {...}}``.

    Raises
    ------
    ChainError
        When no bounty with this id was ever created.
    """
    rows = events(db, args={"bountyId": bounty_id})
    created = [r for r in rows if r["event"] == "BountyCreated"]
    if not created:
        raise ChainError(f"unknown bounty id {bounty_id}: no BountyCreated event in the index")
    timeline = [
        {"block": r["block_number"], "time": r["timestamp"], "tx": r["tx_hash"], "event": r["event"],
         **{k: v for k, v in r["args"].items() if k != "bountyId"}}
        for r in rows
    ]
    rounds: dict[int, dict] = {}
    institutions: dict[str, dict] = defaultdict(lambda: {"credited": 0, "claimed": 0, "cumulative_score": 0,
                                                           "revenue_claimed": 0, "rounds_scored": 0})
    books = {"funded": 0, "credited": 0, "refunded": 0, "claimed": 0, "revenue_paid": 0, "revenue_claimed": 0}
    for row in rows:
        name, args = row["event"], row["args"]
        if name in _FUNDED:
            books["funded"] += args[_FUNDED[name]]
        elif name in _REFUNDED:
            books["refunded"] += args[_REFUNDED[name]]
        elif name == "RoundOpened":
            rounds[args["round"]] = {"round": args["round"], "global_model_hash": _hex(args["globalModelHash"]),
                                     "commit_deadline": args["commitDeadline"], "commitments": {}, "scores": {},
                                     "credits": {}, "new_model_hash": None, "reward": None}
        elif name == "UpdateCommitted":
            rounds[args["round"]]["commitments"][args["institution"]] = {
                "update_hash": _hex(args["updateHash"]), "sample_count": args["sampleCount"]}
        elif name == "ContributionScored":
            r, who = rounds[args["round"]], args["institution"]
            r["scores"][who] = args["score"]
            r["credits"][who] = args["credit"]
            books["credited"] += args["credit"]
            institutions[who]["credited"] += args["credit"]
            institutions[who]["cumulative_score"] += max(args["score"], 0)
            institutions[who]["rounds_scored"] += 1
            institutions[who]["reputation"] = args["reputation"]
        elif name == "RoundFinalized":
            rounds[args["round"]].update(new_model_hash=_hex(args["newModelHash"]), reward=args["reward"])
        elif name == "RewardClaimed":
            books["claimed"] += args["amount"]
            institutions[args["institution"]]["claimed"] += args["amount"]
        elif name == "RevenuePaid":
            books["revenue_paid"] += args["amount"]
        elif name == "RevenueClaimed":
            books["revenue_claimed"] += args["amount"]
            institutions[args["institution"]]["revenue_claimed"] += args["amount"]
    books["escrowed"] = books["funded"] - books["credited"] - books["refunded"]
    if client is not None:
        on_chain = client.bounty(bounty_id)
        books["matches_contract"] = (on_chain.funded, on_chain.credited, on_chain.refunded, on_chain.escrowed) == (
            books["funded"], books["credited"], books["refunded"], books["escrowed"])
    books["no_overpayment"] = all(i["claimed"] <= i["credited"] for i in institutions.values())
    info = created[0]["args"]
    return {
        "bounty_id": bounty_id,
        "created": {"sponsor": info["sponsor"], "aggregator": info["aggregator"], "token": info["token"],
                    "task_spec_hash": _hex(info["taskSpecHash"]),
                    "validation_set_hash": _hex(info["validationSetHash"]),
                    "rules_hash": _hex(info["rulesHash"]), "num_rounds": info["numRounds"],
                    "deadline": info["deadline"], "min_reputation": info["minReputation"]},
        "timeline": timeline,
        "rounds": [rounds[k] for k in sorted(rounds)],
        "institutions": dict(institutions),
        "books": books,
    }


def format_trace(report: dict) -> str:
    """The trace as text for a terminal: one line per event, then the books."""
    lines = [f"bounty {report['bounty_id']}  sponsor {report['created']['sponsor']}  "
             f"aggregator {report['created']['aggregator']}  rounds {report['created']['num_rounds']}"]
    for item in report["timeline"]:
        details = "  ".join(f"{k}={_short(v)}" for k, v in item.items() if k not in ("block", "time", "tx", "event"))
        lines.append(f"  block {item['block']:>6}  {item['event']:<18}  {details}")
    books = report["books"]
    lines.append("books: " + "  ".join(f"{k}={v}" for k, v in books.items()))
    return "\n".join(lines)


def _short(value) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[:10] + "…" if text.startswith("0x") and len(text) == 66 else text
