"""Numbers an institution declares, over real processes (Ganache, ``fedledger aggregator serve``, four
``fedledger node train``) with ``mallory``, a registered institution that commits (bound to itself, valid on chain)
and uploads what it likes:

* round 1, **stall by overflow** (issue 12, attack 1): 3.4e38 in every weight (finite float32, accepted at the door);
* round 2, **take over the model with a sample count** (attack 4): +50 in every weight with ``sampleCount`` 2^62;
* round 3, **crash the aggregator's state**: +50 with ``sampleCount`` 2^63 (beyond SQLite's INTEGER).

The task's declared bounds (:class:`fedcore.task.DeclaredBounds`: samples in [1, 10^6], update norm at most 10^4,
refused above) exclude each one in :func:`aggregator.rounds.compute_round`, with the reason recorded; the rounds go on,
the model moves only by the hospitals' updates, mallory earns nothing, the bounty completes and ``audit verify
--recompute`` replays every round bit for bit.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from fedcore import codec
from tests.e2e.conftest import upload

pytestmark = [pytest.mark.ganache, pytest.mark.slow, pytest.mark.timeout(600)]

# Each round closes once all five invited institutions uploaded (mallory's uploads are accepted at the door).
COMMIT_WINDOW = 60
ATTACKS = {1: (3.4e38, 100), 2: (50.0, 2**62), 3: (50.0, 2**63)}


def _attack(fed, aggregator, bounty_id: int, round_: int, value: float, samples: int, alive) -> None:
    """As mallory: once round ``round_`` is open, commit (bound to itself) and upload ``value`` in every weight."""
    fed.wait_until(lambda: (c := aggregator.current(bounty_id))["round"] == round_ and c["status"] == "open",
                   timeout=180, what=f"round {round_} to open", alive=alive, interval=0.2)
    weights = codec.decode(aggregator.http.get(f"/bounties/{bounty_id}/model").content)
    body = codec.encode({k: np.full_like(v, value) for k, v in weights.items()})
    fed.ledger.as_sender(fed.mallory).commit_update(
        bounty_id, round_, fed.commitment(bounty_id, round_, fed.mallory.address, body), samples)
    accepted = upload(aggregator, fed, fed.mallory, bounty_id, round_, body)
    assert accepted.status_code == 202, accepted.text


def test_declared_numbers_outside_the_tasks_bounds_are_excluded_and_the_bounty_completes(federation, procs, tmp_path):
    fed = federation
    t0 = time.monotonic()
    rounds = len(ATTACKS)
    bounty_id = fed.create_bounty(procs, rounds=rounds, commit_window=COMMIT_WINDOW, reward="2ether")
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator-state")
    nodes = fed.start_nodes(procs, bounty_id, aggregator.url, tmp_path / "nodes")
    alive = (aggregator.proc, *nodes.values())
    for r, (value, samples) in ATTACKS.items():
        _attack(fed, aggregator, bounty_id, r, value, samples, alive)

    fed.wait_completed(bounty_id, timeout=300, alive=(aggregator.proc,))
    for node in nodes.values():
        assert node.wait(120) == 0, node.tail()
    books = fed.check_books(bounty_id, rounds=rounds)
    hospitals = {h.address for h in fed.hospitals.values()}
    reasons = {1: re.compile(r"update norm \d\.\d+e\+39 above the task's limit 10000"),
               2: f"declared {2**62} samples, outside the task's range [1, 1000000]",
               3: f"declared {2**63} samples, outside the task's range [1, 1000000]"}
    for r in ATTACKS:
        record = aggregator.round_record(bounty_id, r)
        assert list(record["excluded"]) == [fed.mallory.address]
        reason = record["excluded"][fed.mallory.address]
        assert reasons[r].fullmatch(reason) if r == 1 else reason == reasons[r], reason
        assert {u["institution"] for u in record["used"]} == hospitals
        assert {e["institution"] for e in books["scored"] if e["round"] == r} == hospitals
        before = codec.decode(aggregator.http.get(f"/bounties/{bounty_id}/models/{record['global_model_hash'][2:]}").content)
        after = codec.decode(aggregator.http.get(f"/bounties/{bounty_id}/models/{record['new_model_hash'][2:]}").content)
        moved = max(float(np.abs(after[k] - before[k]).max()) for k in before)
        assert moved < 1.0, f"round {r}: the model moved by {moved}"  # the hospitals' steps, not mallory's +50
    assert fed.ledger.contribution_of(bounty_id, fed.mallory.address) == (0, 0)
    paid = fed.claim_all(procs, bounty_id, books["credits"])
    assert sum(paid.values()) == fed.ledger.bounty(bounty_id).credited
    report = fed.audit_verify(procs, bounty_id, aggregator.url)  # replays each exclusion for the same reason
    assert {f"exclusions_round_{r}" for r in ATTACKS} <= {c["name"] for c in report["checks"]}
    print(json.dumps({"test": "declared numbers", "setup_module_s": round(fed.setup_seconds, 1),
                      "test_s": round(time.monotonic() - t0, 1)}))
