"""What the explorer shows, computed from the SQLite event index alone (``ledger.indexer`` + ``ledger.audit``).

Pure functions of the index: each returns plain JSON-ready dicts that match the models in
``fedledger.explorer.schemas``. Exactness rules, so that a page shows what the chain holds:

* wei amounts (and any integer that may exceed JavaScript's 2**53: scores, sample counts) travel as
  **decimal strings**; an amount is ``{"wei": "750000000000000000", "eth": "0.750000"}``, where ``eth`` is
  the wei figure divided by 10**18 and **rounded toward zero** to 6 decimals (``None`` for an ERC-20 asset,
  whose decimals the chain's events do not state);
* hashes are lowercase ``0x`` hex, addresses checksummed, reputations basis points (10,000 = 1.0).

The one chain read is optional: ``contract_books`` reads a bounty's counters from the contract *at the
index's last synced block*, so the page can show whether the event-derived books match the contract.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from web3 import Web3

from ledger.audit import trace
from ledger.client import ETH, Bounty, FedLedgerClient
from ledger.deployment import Deployment
from ledger.indexer import Db, events
from ledger.trace import BountyTrace, format_eth, is_eth


def asset(token: str) -> dict:
    """``{"token", "is_eth", "symbol"}``: ``symbol`` is ``ETH`` or ``ERC-20 0xabcd…1234``."""
    token = Web3.to_checksum_address(token)
    eth = is_eth(token)
    return {"token": token, "is_eth": eth, "symbol": "ETH" if eth else f"ERC-20 {token[:6]}…{token[-4:]}"}


def amount(wei: int, token: str = ETH) -> dict:
    """An exact amount: ``{"wei": decimal string, "eth": 6-decimal string or None for a token}``."""
    return {"wei": str(int(wei)), "eth": format_eth(int(wei)) if is_eth(token) else None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _status_of(rows: list[dict]) -> str:
    names = {r["event"] for r in rows}
    if "BountyCancelled" in names:
        return "cancelled"
    if "BountyCompleted" in names:
        return "completed"
    return "active"


def bounty_ids(db: Db) -> list[int]:
    """Every bounty in the index, in creation order."""
    return [r["args"]["bountyId"] for r in events(db, "BountyCreated")]


def _books(report: BountyTrace, contract_match: bool | None) -> dict:
    b, token = report.books, report.created.token
    return {
        "funded": amount(b.funded, token), "credited": amount(b.credited, token),
        "refunded": amount(b.refunded, token), "escrowed": amount(b.escrowed, token),
        "claimed": amount(b.claimed, token), "unclaimed": amount(b.credited - b.claimed, token),
        "no_overpayment": report.no_overpayment, "matches_contract": contract_match,
    }


def _summary(report: BountyTrace, contract_match: bool | None = None) -> dict:
    created = report.created
    first = report.timeline[0]
    return {
        "id": report.bounty_id,
        "status": _status_of([{"event": e.name} for e in report.timeline]),
        "asset": asset(created.token),
        "sponsor": created.sponsor,
        "aggregator": created.aggregator,
        "num_rounds": created.num_rounds,
        "rounds_opened": len(report.rounds),
        "rounds_finalized": len(report.finalized_rounds),
        "deadline": created.deadline,
        "created_block": first.block,
        "created_time": first.time,
        "books": _books(report, contract_match),
    }


def bounty_summaries(db: Db) -> list[dict]:
    """One summary per bounty (status, asset, rounds, books), in creation order."""
    return [_summary(trace(db, bounty_id)) for bounty_id in bounty_ids(db)]


def contract_books(w3: Web3, deployment: Deployment, bounty_id: int, block: int) -> Bounty | None:
    """The contract's own record of a bounty at ``block`` (None if the node cannot answer for that block)."""
    try:
        return FedLedgerClient.from_deployment(w3, deployment).bounty(bounty_id, block=block)
    except Exception:  # noqa: BLE001 - a node without that block's state: no cross-check, not an error
        return None


def bounty_detail(db: Db, bounty_id: int, on_chain: Bounty | None = None) -> dict:
    """Everything about one bounty: summary, hashes, rounds with commitments and scores, institutions,
    payouts, fundings and the event timeline.

    Parameters
    ----------
    db : path or sqlite3.Connection
        A synced index.
    bounty_id : int
        The bounty.
    on_chain : Bounty, optional
        The contract's record (see ``contract_books``); when given, ``books.matches_contract`` says whether
        funded, credited, refunded and escrowed recomputed from events equal the contract's.

    Raises
    ------
    ChainError
        When the index holds no such bounty.
    """
    report = trace(db, bounty_id)
    summary = _summary(report, None if on_chain is None else report.books.matches(on_chain))
    created = report.created
    token = created.token
    names = {who: books.name for who, books in report.institutions.items()}

    rounds = []
    for r in report.rounds:
        scores, credits, reputation = r.scores, r.credits, r.reputation
        commitments = [{
            "institution": who, "name": names.get(who), "update_hash": str(c.update_hash),
            "sample_count": str(c.sample_count), "epsilon": c.declared_epsilon, "scored": who in scores,
            "score": str(scores[who]) if who in scores else None,
            "credit": amount(credits[who], token) if who in scores else None,
            "reputation": reputation.get(who), "block": c.block_number, "tx": c.tx_hash,
        } for who, c in r.committed.items()]
        fin = r.finalized
        rounds.append({
            "round": r.number, "status": "finalized" if fin else ("lapsed" if r.lapsed else "open"),
            "global_model_hash": str(r.global_model_hash),
            "new_model_hash": None if r.new_model_hash is None else str(r.new_model_hash),
            "commit_deadline": r.commit_deadline, "opened_block": r.opened.block, "opened_time": r.opened.time,
            "finalized_block": fin.block if fin else None,
            "reward": None if r.reward is None else amount(r.reward, token),
            "credited": None if r.credited is None else amount(r.credited, token),
            "participants": r.participants,
            "commitments": commitments,
            # the committee: who attested the finalized outcome, and who put another outcome on record
            "attestations": [{**a.to_dict(), "name": names.get(a.scorer)} for a in r.attestations],
            "dissents": [{**a.to_dict(), "name": names.get(a.scorer)} for a in r.dissents],
        })

    institutions = [{
        "institution": who, "name": info.name,
        "credited": amount(info.credited, token), "claimed": amount(info.claimed, token),
        "unclaimed": amount(info.unclaimed, token),
        "cumulative_score": str(info.cumulative_score), "rounds_scored": info.rounds_scored,
        "reputation": info.reputation,
    } for who, info in report.institutions.items()]

    payouts, fundings = [], []
    for event in report.timeline:
        kind, t = event.name, event.args
        move = {"block": event.block, "time": event.time, "tx": event.tx}
        if kind == "RewardClaimed":
            payouts.append({"kind": "reward claim", "party": t["institution"], "name": names.get(t["institution"]),
                            "asset": asset(t["token"]), "amount": amount(t["amount"], t["token"]), **move})
        elif kind == "BountyCancelled":
            payouts.append({"kind": "cancel refund", "party": t["sponsor"], "name": "sponsor",
                            "asset": asset(token), "amount": amount(t["refunded"], token), **move})
        elif kind == "RemainderRefunded":
            payouts.append({"kind": "remainder refund", "party": t["sponsor"], "name": "sponsor",
                            "asset": asset(token), "amount": amount(t["amount"], token), **move})
        elif kind == "RevenueClaimed":
            payouts.append({"kind": "revenue claim", "party": t["institution"], "name": names.get(t["institution"]),
                            "asset": asset(t["token"]), "amount": amount(t["amount"], t["token"]), **move})
        elif kind == "BountyFunded":
            fundings.append({"kind": "funding", "party": t["funder"], "name": None,
                             "asset": asset(token), "amount": amount(t["amount"], token), **move})
        elif kind == "RevenuePaid":
            fundings.append({"kind": "revenue paid", "party": t["payer"], "name": None,
                             "asset": asset(t["token"]), "amount": amount(t["amount"], t["token"]), **move})

    return {
        **summary,
        "task_spec_hash": str(created.task_spec_hash),
        "validation_set_hash": str(created.validation_set_hash),
        "min_reputation": created.min_reputation,
        "rounds": rounds,
        "institutions": institutions,
        "payouts": payouts,
        "fundings": fundings,
        "timeline": [
            {"block": e.block, "time": e.time, "tx": e.tx, "event": e.name,
             "args": _jsonable({k: v for k, v in e.args.items() if k != "bountyId"})}
            for e in report.timeline
        ],
    }


def institutions(db: Db) -> list[dict]:
    """Every institution that ever joined: name, stake, status, reputation now, rounds scored, and what it was
    credited and claimed per asset across all bounties; in order of first joining."""
    rows = events(db)
    token_of = {r["args"]["bountyId"]: r["args"]["token"] for r in rows if r["event"] == "BountyCreated"}
    records: dict[str, dict] = {}
    earnings: dict[str, dict[str, dict]] = defaultdict(lambda: defaultdict(lambda: {"credited": 0, "claimed": 0}))
    for row in rows:
        name, a = row["event"], row["args"]
        who = a.get("institution")
        if name == "InstitutionJoined":
            rec = records.setdefault(who, {
                "address": who, "initial_reputation": a["reputation"], "joined_block": row["block_number"],
                "joined_time": row["timestamp"], "slashed": 0, "rounds_scored": 0, "cumulative_score": 0,
                "bounties": [],
            })
            rec.update(name=a["name"], metadata_uri=a["metadataURI"], stake=a["stake"], status="registered",
                       reputation=a["reputation"])
        elif who not in records:
            continue
        elif name == "LeaveRequested":
            records[who]["status"] = "leaving"
        elif name == "StakeWithdrawn":
            records[who].update(stake=0, status="left")
        elif name == "InstitutionSlashed":
            records[who]["stake"] -= a["amount"]
            records[who]["slashed"] += a["amount"]
        elif name == "ContributionScored":
            rec = records[who]
            rec["reputation"] = a["reputation"]
            rec["rounds_scored"] += 1
            rec["cumulative_score"] += max(a["score"], 0)
            if a["bountyId"] not in rec["bounties"]:
                rec["bounties"].append(a["bountyId"])
            earnings[who][token_of[a["bountyId"]]]["credited"] += a["credit"]
        elif name == "RewardClaimed":
            earnings[who][a["token"]]["claimed"] += a["amount"]
    result = []
    for who, rec in records.items():
        result.append({
            **rec,
            "stake": amount(rec["stake"]), "slashed": amount(rec["slashed"]),
            "cumulative_score": str(rec["cumulative_score"]),
            "earnings": [
                {"asset": asset(token), "credited": amount(e["credited"], token),
                 "claimed": amount(e["claimed"], token), "unclaimed": amount(e["credited"] - e["claimed"], token)}
                for token, e in earnings[who].items()
            ],
        })
    return result


def reputation(db: Db) -> dict:
    """Reputation over time: per institution, its reputation before any round and after each finalized round.

    Returns
    -------
    dict
        ``{"rounds": [{"index", "bounty", "round", "block", "time", "label"}], "series": [...]}`` where
        ``rounds[0]`` is the start (index 0, no bounty) and ``rounds[k]`` the k-th finalized round across all
        bounties in chain order; each series is ``{"institution", "name", "points": [{"index", "reputation",
        "scored", "score"}]}`` with one point per column from the first at which the institution had joined
        (``scored`` is True where the round's ``ContributionScored`` event set the value; elsewhere the
        reputation carries over unchanged, since only scoring changes it).
    """
    rows = events(db)
    columns = [{"index": 0, "bounty": None, "round": None, "block": None, "time": None, "label": "start"}]
    current: dict[str, int] = {}
    names: dict[str, str] = {}
    order: list[str] = []
    points: dict[str, list[dict]] = defaultdict(list)
    pending: dict[str, dict] = {}  # scored in the round being finalized (events come before RoundFinalized)
    for row in rows:
        name, a = row["event"], row["args"]
        if name == "InstitutionJoined":
            who = a["institution"]
            if who not in current:
                order.append(who)
            current[who] = a["reputation"]
            names[who] = a["name"]
            if len(columns) == 1:  # joined before any finalized round: part of the start column
                points[who] = [{"index": 0, "reputation": a["reputation"], "scored": False, "score": None}]
        elif name == "ContributionScored":
            current[a["institution"]] = a["reputation"]
            pending[a["institution"]] = {"score": str(a["score"])}
        elif name == "RoundFinalized":
            index = len(columns)
            columns.append({"index": index, "bounty": a["bountyId"], "round": a["round"],
                            "block": row["block_number"], "time": row["timestamp"],
                            "label": f"b{a['bountyId']} r{a['round']}"})
            for who in order:
                scored = pending.get(who)
                points[who].append({"index": index, "reputation": current[who], "scored": scored is not None,
                                    "score": scored["score"] if scored else None})
            pending = {}
    return {
        "rounds": columns,
        "series": [{"institution": who, "name": names[who], "points": points[who]} for who in order],
    }
