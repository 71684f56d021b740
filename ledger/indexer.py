"""Index the events of deployed contracts into SQLite, for the audit trail and the explorer.

Storage of values in ``args_json`` (exact in SQLite, JSON and JavaScript alike):

* integers (``uint*``/``int*``) as **decimal strings**, since wei amounts exceed both SQLite's 64-bit
  integers and JavaScript's 2**53; ``events()`` turns them back into Python ``int`` using the event ABI
  kept in the ``event_abis`` table;
* addresses as checksummed strings, ``bytes``/``bytesN`` (and indexed dynamic values, which the log only
  holds as a hash) as lowercase ``0x`` hex, bools as JSON bools, arrays as lists, structs as objects.

Re-syncing is idempotent (``INSERT OR IGNORE`` on the log's position) and each chunk's events and its
progress mark are committed together, so a crash mid-sync loses nothing and a restart resumes. Chain
reorganisations are not handled: fine for Ganache and the embedded chain, which never reorganise.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_typing import ABIEvent
from eth_utils import event_abi_to_log_topic, to_checksum_address
from eth_utils.abi import collapse_if_tuple
from web3 import Web3

from fedcore.errors import ChainError
from ledger.deployment import Deployment
from ledger.reverts import normalize_abi_value

CHUNK = 2000  # blocks per eth_getLogs request

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    block_number INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    contract TEXT NOT NULL,
    event TEXT NOT NULL,
    args_json TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (block_number, tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (event, block_number);
CREATE TABLE IF NOT EXISTS event_abis (
    contract TEXT NOT NULL,
    event TEXT NOT NULL,
    abi_json TEXT NOT NULL,
    PRIMARY KEY (contract, event)
);
CREATE TABLE IF NOT EXISTS sync_state (
    contract TEXT PRIMARY KEY,
    chain_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    last_block INTEGER NOT NULL
);
"""

Db = str | os.PathLike | sqlite3.Connection


def open_db(db: Db) -> sqlite3.Connection:
    """Open (and create) an index database; a connection passes through unchanged."""
    if isinstance(db, sqlite3.Connection):
        conn = db
    else:
        conn = sqlite3.connect(os.fspath(db))
    conn.executescript(SCHEMA)
    return conn


def _strings_for_ints(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return [_strings_for_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _strings_for_ints(v) for k, v in value.items()}
    return value


def _ints_back(abi_input: dict, value: Any) -> Any:
    abi_type = abi_input["type"]
    if abi_input.get("indexed") and _hashed_when_indexed(abi_type):
        return value
    if abi_type.endswith("]"):
        inner = {"type": abi_type[: abi_type.rindex("[")], "components": abi_input.get("components", [])}
        return [_ints_back(inner, v) for v in value]
    if abi_type == "tuple":
        components = {c.get("name") or str(i): c for i, c in enumerate(abi_input.get("components", []))}
        return {k: _ints_back(components[k], v) if k in components else v for k, v in value.items()}
    if abi_type.startswith(("uint", "int")):
        return int(value)
    return value


def _hashed_when_indexed(abi_type: str) -> bool:
    # Indexed strings, bytes, arrays and structs are stored in the topic as their keccak hash.
    return abi_type in ("string", "bytes") or abi_type.endswith("]") or abi_type.startswith("tuple")


def decode_log(event_abi: dict, log: Mapping) -> dict:
    """Decode one log's arguments by name (values normalised as in ``normalize_abi_value``)."""
    inputs = event_abi.get("inputs", [])
    topics = list(log["topics"])[0 if event_abi.get("anonymous") else 1:]
    indexed = [i for i in inputs if i.get("indexed")]
    plain = [i for i in inputs if not i.get("indexed")]
    if len(indexed) != len(topics):
        # Same signature, other layout (ERC-20 vs ERC-721 Transfer): not this event.
        raise ValueError(f"{event_abi['name']}: {len(topics)} topics for {len(indexed)} indexed inputs")
    data = bytes(log["data"]) if not isinstance(log["data"], str) else bytes.fromhex(log["data"][2:])
    plain_values = iter(decode([collapse_if_tuple(i) for i in plain], data))
    topic_values = iter(topics)
    args = {}
    for n, i in enumerate(inputs):
        name = i.get("name") or f"arg{n}"
        if i.get("indexed"):
            topic = bytes(next(topic_values))
            if _hashed_when_indexed(i["type"]):
                args[name] = "0x" + topic.hex()
            else:
                (value,) = decode([i["type"]], topic)
                args[name] = normalize_abi_value(i, value)
        else:
            args[name] = normalize_abi_value(i, next(plain_values))
    return args


def _events_by_topic(abi: Iterable[dict]) -> dict[bytes, dict]:
    return {
        event_abi_to_log_topic(cast(ABIEvent, e)): e for e in abi if e.get("type") == "event" and not e.get("anonymous")
    }


def sync(
    w3: Web3,
    deployment: Deployment,
    db_path: Db,
    abis: Mapping[str, list],
    *,
    to_block: int | None = None,
    chunk: int = CHUNK,
) -> int:
    """Fetch and store the events of deployed contracts, from where the last sync stopped.

    Parameters
    ----------
    w3 : Web3
        The chain (checked against ``deployment``'s chain id).
    deployment : Deployment
        Where each contract lives and the block it was deployed in (the first block read).
    db_path : path-like or sqlite3.Connection
        The SQLite index.
    abis : mapping of str to list
        ``{contract name in the deployment: its ABI}``; only these contracts are indexed. Logs whose
        topic0 is not an event of the ABI are skipped.
    to_block : int, optional
        Last block to read; the latest block when omitted.
    chunk : int
        Blocks per ``eth_getLogs`` request.

    Returns
    -------
    int
        How many new events were stored.

    Raises
    ------
    ChainError
        When the chain is not the deployment's, or the index already holds another deployment of a contract.
    """
    deployment.check_chain(w3)
    conn = open_db(db_path)
    try:
        last = w3.eth.block_number if to_block is None else int(to_block)
        added = 0
        for name, abi in abis.items():
            address = deployment.address(name)
            added += _sync_contract(
                w3, conn, deployment.chain_id, name, address, deployment.block(name), abi, last, chunk
            )
        return added
    finally:
        if not isinstance(db_path, sqlite3.Connection):
            conn.close()


def _sync_contract(w3, conn, chain_id, name, address, first_block, abi, last, chunk) -> int:
    row = conn.execute("SELECT chain_id, address, last_block FROM sync_state WHERE contract = ?", (name,)).fetchone()
    if row and (row[0] != chain_id or row[1] != address):
        raise ChainError(
            f"the index holds {name} at {row[1]} on chain {row[0]}, not {address} on chain {chain_id}: "
            "delete the index database to rebuild it"
        )
    start = row[2] + 1 if row else first_block
    by_topic = _events_by_topic(abi)
    with conn:
        conn.executemany(
            "INSERT OR REPLACE INTO event_abis (contract, event, abi_json) VALUES (?, ?, ?)",
            [(name, e["name"], json.dumps(e, sort_keys=True)) for e in by_topic.values()],
        )
    added = 0
    timestamps: dict[int, int] = {}
    for lo in range(start, last + 1, chunk):
        hi = min(lo + chunk - 1, last)
        logs = w3.eth.get_logs({"address": address, "fromBlock": lo, "toBlock": hi})
        rows = []
        for log in logs:
            topics = log["topics"]
            event_abi = by_topic.get(bytes(topics[0])) if topics else None
            if event_abi is None:
                continue
            block = int(log["blockNumber"])
            if block not in timestamps:
                timestamps[block] = int(w3.eth.get_block(block)["timestamp"])
            try:
                args = _strings_for_ints(decode_log(event_abi, log))
            except (ValueError, DecodingError):
                continue
            rows.append((
                block, "0x" + bytes(log["transactionHash"]).hex(), int(log["logIndex"]), name, event_abi["name"],
                json.dumps(args, sort_keys=True), timestamps[block],
            ))
        with conn:  # the chunk's events and the progress mark commit together
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            added += conn.total_changes - before
            conn.execute(
                "INSERT OR REPLACE INTO sync_state (contract, chain_id, address, last_block) VALUES (?, ?, ?, ?)",
                (name, chain_id, address, hi),
            )
    return added


def last_synced_block(db: Db, contract: str) -> int | None:
    """The last block indexed for ``contract``, or None if it was never synced."""
    conn = open_db(db)
    try:
        row = conn.execute("SELECT last_block FROM sync_state WHERE contract = ?", (contract,)).fetchone()
    finally:
        if not isinstance(db, sqlite3.Connection):
            conn.close()
    return row[0] if row else None


def _query_value(value: Any) -> Any:
    """A Python value as it appears in args_json: ints as decimal strings, addresses checksummed."""
    if isinstance(value, bool):
        return 1 if value else 0  # json_extract returns JSON true/false as 1/0
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and Web3.is_address(value):
        return to_checksum_address(value)
    if isinstance(value, str) and value.startswith("0x"):
        return value.lower()
    return value


def events(
    db: Db,
    event: str | None = None,
    *,
    contract: str | None = None,
    args: Mapping[str, Any] | None = None,
    where: Callable[[dict], bool] | None = None,
) -> list[dict]:
    """Indexed events in chain order.

    Parameters
    ----------
    db : path-like or sqlite3.Connection
        The index.
    event : str, optional
        Only this event name, e.g. ``"RoundFinalized"``.
    contract : str, optional
        Only this contract (deployment name).
    args : mapping, optional
        Equality filters on (top-level) arguments, done in SQL, e.g. ``{"bountyId": 3}``; ints and
        addresses are matched exactly.
    where : callable, optional
        A Python predicate on each decoded row, for anything else.

    Returns
    -------
    list of dict
        Rows ``{"block_number", "tx_hash", "log_index", "contract", "event", "args", "timestamp"}`` with
        ``args`` decoded and integers back to Python ``int``.
    """
    conn = open_db(db)
    sql = "SELECT block_number, tx_hash, log_index, contract, event, args_json, timestamp FROM events WHERE 1 = 1"
    params: list[Any] = []
    if event is not None:
        sql += " AND event = ?"
        params.append(event)
    if contract is not None:
        sql += " AND contract = ?"
        params.append(contract)
    for key, value in (args or {}).items():
        sql += " AND json_extract(args_json, ?) = ?"
        params += [f'$."{key}"', _query_value(value)]
    sql += " ORDER BY block_number, log_index"
    abis = {
        (c, e): json.loads(a) for c, e, a in conn.execute("SELECT contract, event, abi_json FROM event_abis")
    }
    result = []
    for block, tx, index, contract_name, event_name, args_json, ts in conn.execute(sql, params):
        decoded = json.loads(args_json)
        abi = abis.get((contract_name, event_name))
        if abi:
            inputs = {i.get("name") or f"arg{n}": i for n, i in enumerate(abi.get("inputs", []))}
            decoded = {k: _ints_back(inputs[k], v) if k in inputs else v for k, v in decoded.items()}
        row = {
            "block_number": block, "tx_hash": tx, "log_index": index, "contract": contract_name,
            "event": event_name, "args": decoded, "timestamp": ts,
        }
        if where is None or where(row):
            result.append(row)
    if not isinstance(db, sqlite3.Connection):
        conn.close()
    return result
