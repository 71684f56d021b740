"""Event indexer: decoding by ABI, exact big integers, idempotent and incremental re-sync."""

import sqlite3

import pytest

from fedcore.errors import ChainError
from ledger.chain import send_transaction
from ledger.deployment import Deployment, deploy
from ledger.indexer import events, last_synced_block, sync

BIG = 2**256 - 1


@pytest.fixture
def indexed(backend, sol_artifacts, tmp_path):
    """A Probe with no limit, its deployment, and an index path."""
    artifact = sol_artifacts["Probe"]
    address, block = deploy(backend.w3, "Probe", BIG, 0, sender=backend.node_sender, artifact=artifact)
    deployment = Deployment(backend.w3.eth.chain_id, backend.name)
    deployment.add("Probe", address, block)
    contract = backend.w3.eth.contract(address=address, abi=artifact["abi"])
    return backend, deployment, contract, {"Probe": artifact["abi"]}, tmp_path / "index.sqlite"


def test_sync_decodes_and_resync_is_idempotent(indexed):
    backend, deployment, probe, abis, db = indexed
    w3 = backend.w3
    send_transaction(w3, probe.functions.store(1, BIG, "max"), backend.local)
    send_transaction(w3, probe.functions.store(2**200, 7, "héllo"), backend.node_sender)
    send_transaction(w3, probe.functions.deposit(), backend.local, value=3 * 10**18)

    # Ownable's OwnershipTransferred in the deployment block, then our three.
    assert sync(w3, deployment, db, abis, chunk=2) == 4
    assert sync(w3, deployment, db, abis) == 0  # nothing new
    assert last_synced_block(db, "Probe") == w3.eth.block_number

    rows = events(db)
    assert [r["event"] for r in rows] == ["OwnershipTransferred", "Stored", "Stored", "Deposited"]
    assert rows[0]["block_number"] == deployment.block("Probe")
    assert rows[0]["args"]["newOwner"] == backend.node_sender
    first = rows[1]
    assert first["args"] == {"bountyId": 1, "by": backend.local.address, "value": BIG, "note": "max"}
    assert first["contract"] == "Probe" and first["tx_hash"].startswith("0x") and len(first["tx_hash"]) == 66
    assert first["timestamp"] == w3.eth.get_block(first["block_number"])["timestamp"]
    assert rows[2]["args"]["bountyId"] == 2**200 and rows[2]["args"]["note"] == "héllo"
    assert rows[3]["args"] == {"from": backend.local.address, "amount": 3 * 10**18}

    # Integers are stored as decimal strings: exact in SQLite and JSON.
    raw = sqlite3.connect(db).execute("SELECT args_json FROM events WHERE event = 'Stored' ORDER BY block_number").fetchone()[0]
    assert f'"value": "{BIG}"' in raw

    # Forgetting the progress mark and syncing again inserts nothing twice.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM sync_state")
    assert sync(w3, deployment, db, abis) == 0
    assert len(events(db)) == 4

    send_transaction(w3, probe.functions.store(3, 1, ""), backend.local)
    assert sync(w3, deployment, db, abis) == 1
    assert len(events(db, "Stored")) == 3


def test_queries(indexed):
    backend, deployment, probe, abis, db = indexed
    w3 = backend.w3
    for bounty, who in [(5, backend.local), (2**200, backend.node_sender), (5, backend.node_sender)]:
        send_transaction(w3, probe.functions.store(bounty, 1, f"b{bounty}"), who)
    sync(w3, deployment, db, abis)

    assert [r["args"]["note"] for r in events(db, "Stored", args={"bountyId": 5})] == ["b5", "b5"]
    assert [r["args"]["bountyId"] for r in events(db, "Stored", args={"bountyId": 2**200})] == [2**200]
    by_local = events(db, args={"by": backend.local.address.lower()})  # any address spelling
    assert len(by_local) == 1 and by_local[0]["args"]["by"] == backend.local.address
    assert len(events(db, "Stored", where=lambda r: r["args"]["bountyId"] > 5)) == 1
    assert events(db, "Deposited") == [] and events(db, contract="Other") == []


def test_index_of_another_deployment_is_refused(indexed, sol_artifacts):
    backend, deployment, probe, abis, db = indexed
    sync(backend.w3, deployment, db, abis)
    address, block = deploy(backend.w3, "Probe", 1, 0, sender=backend.node_sender, artifact=sol_artifacts["Probe"])
    other = Deployment(deployment.chain_id, None)
    other.add("Probe", address, block)
    with pytest.raises(ChainError, match="delete the index database"):
        sync(backend.w3, other, db, abis)


def test_sync_checks_the_chain(indexed):
    backend, deployment, probe, abis, db = indexed
    wrong = Deployment(deployment.chain_id + 1, None, dict(deployment.contracts))
    with pytest.raises(ChainError, match="deployment is for chain id"):
        sync(backend.w3, wrong, db, abis)
