"""Attacks on commitments, over real processes (Ganache, ``fedledger aggregator serve``, four ``fedledger node train``)
with ``mallory``, a registered institution, driven from the test.

* Round 1, **grief by copying a commitment** (issue 12, attack 3): as soon as Cleveland's commitment is mined,
  mallory commits the same 32 bytes. A commitment binds its committer (:mod:`fedcore.commitments`), so the copy
  commits to Cleveland's address: no upload of mallory's can match it (refused, 409), Cleveland's still does.
* Round 2, **copy a competitor's update** (attack 2, the reward half): mallory copies Hungarian's commitment and
  uploads Hungarian's exact bytes (taken from its disk here: the worst leak there is), signed as itself: refused.

Both times the attacker earns nothing, every hospital is used and scored (the victim too), the bounty completes and
``audit verify --recompute`` passes.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import upload

pytestmark = [pytest.mark.ganache, pytest.mark.slow, pytest.mark.timeout(600)]

# mallory's uploads are refused, so the round closes when its window ends (no early close on the invited set).
COMMIT_WINDOW = 45


def _copy_commitment(fed, bounty_id: int, round_: int, victim: str, alive) -> bytes:
    """Wait for ``victim``'s commitment in ``round_`` and commit the same bytes as mallory; returns them."""
    commitment = fed.wait_until(
        lambda: (c := fed.ledger.commitment_of(bounty_id, round_, victim)) != bytes(32) and c,
        timeout=120, what=f"the victim's commitment in round {round_}", alive=alive, interval=0.2)
    samples = next(e["sampleCount"] for e in fed.events("UpdateCommitted", bounty_id)
                   if e["institution"] == victim and e["round"] == round_)
    fed.ledger.as_sender(fed.mallory).commit_update(bounty_id, round_, commitment, samples)
    assert fed.ledger.commitment_of(bounty_id, round_, fed.mallory.address) == commitment
    return commitment


def test_copied_commitments_are_worthless_to_the_copier_and_cost_the_victim_nothing(federation, procs, tmp_path):
    fed = federation
    t0 = time.monotonic()
    rounds = 2
    bounty_id = fed.create_bounty(procs, rounds=rounds, commit_window=COMMIT_WINDOW, reward="2ether")
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator-state")
    state_root = tmp_path / "nodes"
    nodes = fed.start_nodes(procs, bounty_id, aggregator.url, state_root)
    alive = (aggregator.proc, *nodes.values())
    cleveland, hungarian = fed.hospitals["cleveland"], fed.hospitals["hungarian"]

    # round 1: grief Cleveland by committing its commitment
    _copy_commitment(fed, bounty_id, 1, cleveland.address, alive)
    refused = upload(aggregator, fed, fed.mallory, bounty_id, 1, b"mallory has no bytes that bind to this")
    assert refused.status_code == 409 and refused.json()["code"] == "hash_mismatch", refused.text

    # round 2: copy Hungarian's commitment and its very bytes, sign them as mallory
    _copy_commitment(fed, bounty_id, 2, hungarian.address, alive)
    stolen = fed.wait_until(lambda: _saved(state_root, hungarian.name, bounty_id, 2), timeout=60,
                            what="Hungarian's round-2 bytes", alive=alive)
    refused = upload(aggregator, fed, fed.mallory, bounty_id, 2, stolen)
    # mallory idled in round 1 (no accepted upload), so by the invitation rule it is not even invited to round 2;
    # were it invited, the stolen bytes would not bind to its own address either (409 hash_mismatch, round 1 and
    # tests/aggregator/service/test_service_coordinator.py)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_selected"), refused.text

    fed.wait_completed(bounty_id, timeout=300, alive=(aggregator.proc,))
    for node in nodes.values():
        assert node.wait(120) == 0, node.tail()
    books = fed.check_books(bounty_id, rounds=rounds)
    hospitals = {h.address for h in fed.hospitals.values()}
    for r in range(1, rounds + 1):
        scored = {e["institution"]: e for e in books["scored"] if e["round"] == r}
        assert set(scored) == hospitals  # the victims too: a copy no longer drops the original
        assert scored[cleveland.address if r == 1 else hungarian.address]["credit"] > 0
        record = aggregator.round_record(bounty_id, r)
        assert {u["institution"] for u in record["used"]} == hospitals
        reason = "committed; its upload was refused (hash_mismatch: " if r == 1 else "not selected for this round"
        assert list(record["excluded"]) == [fed.mallory.address]
        assert record["excluded"][fed.mallory.address].startswith(reason)
    assert fed.ledger.contribution_of(bounty_id, fed.mallory.address) == (0, 0)
    paid = fed.claim_all(procs, bounty_id, books["credits"])
    assert sum(paid.values()) == fed.ledger.bounty(bounty_id).credited
    fed.audit_verify(procs, bounty_id, aggregator.url)
    print(json.dumps({"test": "commitment attacks", "setup_module_s": round(fed.setup_seconds, 1),
                      "test_s": round(time.monotonic() - t0, 1)}))


def _saved(state_root, hospital: str, bounty_id: int, round_: int) -> bytes | None:
    path = state_root / hospital / str(bounty_id) / f"round-{round_}.safetensors"
    return path.read_bytes() if path.exists() else None
