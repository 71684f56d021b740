"""A federation of real processes: a dev chain (Ganache; Anvil runs the three-round test), ``fedledger aggregator
serve``, four ``fedledger node train`` (the four Fed-Heart-Disease hospitals), the sponsor's and the auditor's commands, all through the CLI (see conftest.py).

* ``test_three_rounds_with_misbehaving_participants``: three rounds on real data; meanwhile, in round 1, a key that
  never joined uploads (403), a registered institution uploads without committing (403), then commits one hash and
  uploads other bytes (409). On chain: every commitment is the sha256 of the bytes the node saved and the aggregator
  used, bound to its committer (fedcore.commitments), the scores are the aggregator's, the misbehaving institution got no score nor credit, credits add up, each
  hospital claims exactly its credit once; ``audit verify --recompute`` re-derives every model and score bit for bit.
* ``test_node_killed_after_committing_resumes_without_committing_twice``: a node SIGKILLed after its commitment
  reached the chain and before its upload is restarted: no second commitment, its update is used and paid.
* ``test_aggregator_crash_between_scoring_and_finalizing``: the aggregator dies right after saving round 1's
  scores (test-only hook FEDLEDGER_FAULT=crash-after:scored in aggregator.service.coordinator, the one crash point
  that cannot be hit from outside) and is restarted: round 1 is finalized once, with the saved scores, unrecomputed.

Every test ends with the same books: each round opened and finalized once, each (institution, round) committed and
scored at most once, credits summing to the bounty's credited, funded = credited + refunded + escrowed, and every
hospital claiming exactly its credit once (a second claim refused).
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import time
from contextlib import closing

import numpy as np
import pytest

from fedcore import codec
from ledger.devchain import GANACHE
from tests.e2e.conftest import upload
from tests.world import RPC_ENGINES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ZERO_HASH = bytes(32)
# Rounds close as soon as every invited institution uploaded, so the window only bounds the failure cases (and the
# first round of each bounty, where mallory is invited and idle: it is not invited again). It
# is 60 s, not 30: on a loaded 2-core machine, four nodes importing torch and unlocking their keystores at once took
# up to ~30 s to commit in round 1 (a 30 s window once made the slowest one miss it).
COMMIT_WINDOW = 60


@pytest.fixture(scope="module", params=RPC_ENGINES)
def chain_engine(request) -> str:
    """The module on Ganache, then on Anvil (one federation per engine; params carry the engine's marker)."""
    return request.param


@pytest.fixture(scope="module")
def ganache_only(chain_engine) -> None:
    """Anvil runs the representative three-round test only: the whole module on both engines took 674 s on Ganache
    and 626 s more on Anvil (load ~25 on 2 cores); the crash-recovery tests exercise the processes, not the chain."""
    if chain_engine != GANACHE:
        pytest.skip("crash recovery runs on Ganache only (Anvil runs the three-round test)")


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _nothing_stored(aggregator, fed, block: int, bounty_id: int, round_: int, body: bytes) -> None:
    """A refused upload changed nothing: no transaction, no upload recorded, no bytes stored, round still open."""
    assert fed.w3.eth.block_number == block
    record = aggregator.round_record(bounty_id, round_)
    assert record["uploads"] == [] and record["step"] == "open"
    assert aggregator.current(bounty_id)["uploads"] == 0
    sha = hashlib.sha256(body).hexdigest()
    assert not (aggregator.state_dir / "updates" / sha).exists()
    sealed = aggregator.http.get(f"/bounties/{bounty_id}/rounds/{round_}/updates/{sha}")  # nothing is served while open
    assert sealed.status_code == 403 and sealed.json()["code"] == "round_open"


def _accepted(aggregator, round_: int, address: str) -> bool:
    """Whether the aggregator's state holds an accepted upload of ``address`` (read from its database: the API
    lists no upload while the round is open)."""
    with closing(sqlite3.connect(f"file:{aggregator.state_dir / 'aggregator.sqlite'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT 1 FROM uploads WHERE round = ? AND institution = ?", (round_, address)).fetchone() is not None


def _timings(record: dict, **more) -> None:
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in {**record, **more}.items()}))


def test_three_rounds_with_misbehaving_participants(federation, procs, tmp_path):
    fed = federation
    t0 = time.monotonic()
    rounds = 3
    bounty_id = fed.create_bounty(procs, rounds=rounds, commit_window=COMMIT_WINDOW)
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator-state")
    agg = aggregator.proc
    current = fed.wait_until(lambda: (c := aggregator.current(bounty_id))["status"] == "open" and c, timeout=60,
                             what="round 1 to open", alive=(agg,))
    assert current["round"] == 1
    assert set(current["selected"]) == {h.address for h in fed.hospitals.values()} | {fed.mallory.address}

    # -- misbehaviour in round 1, before the honest nodes start ---------------------------------------------
    model = aggregator.http.get(f"/bounties/{bounty_id}/model")
    assert "0x" + hashlib.sha256(model.content).hexdigest() == _hex(fed.ledger.round(bounty_id, 1).global_model_hash)
    weights = codec.decode(model.content)
    announced = codec.encode({k: np.full_like(v, 0.01) for k, v in weights.items()})  # what mallory commits
    swapped = codec.encode({k: np.full_like(v, 0.02) for k, v in weights.items()})  # what mallory uploads

    block = fed.w3.eth.block_number  # nobody else sends a transaction until the nodes start
    # (c) a signer that never joined
    refused = upload(aggregator, fed, fed.outsider, bounty_id, 1, swapped)
    assert refused.status_code == 403, refused.text
    assert "not a registered institution" in refused.json()["detail"]
    _nothing_stored(aggregator, fed, block, bounty_id, 1, swapped)

    # (b) a registered institution that uploads without committing
    refused = upload(aggregator, fed, fed.mallory, bounty_id, 1, swapped)
    assert refused.status_code == 403, refused.text
    assert "has not committed" in refused.json()["detail"]
    _nothing_stored(aggregator, fed, block, bounty_id, 1, swapped)
    assert fed.ledger.commitment_of(bounty_id, 1, fed.mallory.address) == ZERO_HASH

    # (a) commits to one update, uploads other bytes (correctly signed for those bytes)
    fed.ledger.as_sender(fed.mallory).commit_update(
        bounty_id, 1, fed.commitment(bounty_id, 1, fed.mallory.address, announced), 100)
    block = fed.w3.eth.block_number
    refused = upload(aggregator, fed, fed.mallory, bounty_id, 1, swapped)
    assert refused.status_code == 409, refused.text
    assert "commitment" in refused.json()["detail"]
    _nothing_stored(aggregator, fed, block, bounty_id, 1, swapped)
    # ... and the same bytes announced and signed as the committed hash: the body's own hash gives it away
    refused = upload(aggregator, fed, fed.mallory, bounty_id, 1, swapped, signed_hash=hashlib.sha256(announced).digest())
    assert refused.status_code == 409 and "the body hashes to" in refused.json()["detail"], refused.text
    _nothing_stored(aggregator, fed, block, bounty_id, 1, swapped)

    # -- the four hospitals --------------------------------------------------------------------------------
    state_root = tmp_path / "nodes"
    nodes = fed.start_nodes(procs, bounty_id, aggregator.url, state_root)
    fed.wait_completed(bounty_id, timeout=300, alive=(agg,))
    t_rounds = time.monotonic() - t0
    for node in nodes.values():
        assert node.wait(120) == 0, node.tail()
        assert f"bounty {bounty_id}: completed; took part in {rounds} round(s)" in node.stdout()

    # -- the chain, against what the nodes saved and the aggregator recorded ----------------------------------
    books = fed.check_books(bounty_id, rounds=rounds)
    committed = {(e["institution"], e["round"]): e for e in books["committed"]}
    scored = {(e["institution"], e["round"]): e for e in books["scored"]}
    finalized = {e["round"]: e for e in books["finalized"]}
    hospitals = {h.address: h for h in fed.hospitals.values()}
    assert set(committed) == {(a, r) for a in hospitals for r in range(1, rounds + 1)} | {(fed.mallory.address, 1)}
    assert set(scored) == {(a, r) for a in hospitals for r in range(1, rounds + 1)}
    previous_model = None
    for r in range(1, rounds + 1):
        record = aggregator.round_record(bounty_id, r)
        chain_round = fed.ledger.round(bounty_id, r)
        assert record["step"] == "finalized" and chain_round.finalized
        assert record["new_model_hash"] == _hex(chain_round.new_model_hash) == _hex(finalized[r]["newModelHash"])
        if previous_model is not None:
            assert _hex(chain_round.global_model_hash) == previous_model
        previous_model = _hex(chain_round.new_model_hash)
        used = {u["institution"]: u for u in record["used"]}
        assert set(used) == set(hospitals)
        for address, h in hospitals.items():
            saved = fed.saved_update(state_root, h.name, bounty_id, r)
            commitment = committed[(address, r)]
            assert "0x" + hashlib.sha256(saved).hexdigest() == used[address]["sha256"]
            bound = fed.commitment(bounty_id, r, address, saved)  # the update's hash bound to its committer
            assert _hex(commitment["updateHash"]) == _hex(fed.ledger.commitment_of(bounty_id, r, address)) == _hex(bound)
            assert commitment["sampleCount"] == h.rows == used[address]["num_samples"]
            assert scored[(address, r)]["score"] == int(record["scores"]["fixed_point"][address])
            stored = aggregator.http.get(f"/bounties/{bounty_id}/rounds/{r}/updates/{used[address]['sha256'][2:]}")
            assert stored.content == saved
        assert {u["institution"] for u in record["uploads"]} == set(hospitals)
        if r == 1:  # mallory committed, was refused at the door, and is excluded with the reason
            assert list(record["excluded"]) == [fed.mallory.address]  # its last refusal: the body's hash
            assert record["excluded"][fed.mallory.address].startswith(
                "committed; its upload was refused (hash_mismatch: the body hashes to")
    for h in fed.hospitals.values():
        state = fed.node_state(state_root, h.name, bounty_id)
        assert [state["rounds"][str(r)]["status"] for r in range(1, rounds + 1)] == ["uploaded"] * rounds
    # (a), (b), (c): no score, no credit, nothing to claim
    assert not [e for e in books["scored"] if e["institution"] in (fed.mallory.address, fed.outsider.address)]
    assert fed.ledger.contribution_of(bounty_id, fed.mallory.address) == (0, 0)
    assert fed.ledger.contribution_of(bounty_id, fed.outsider.address) == (0, 0)
    assert fed.ledger.institution(fed.mallory.address).registered  # no slashing happened on its behalf either

    # -- a hospital looks at its rewards, everyone claims, the auditor verifies ---------------------------------
    cleveland = fed.hospitals["cleveland"]
    status = json.loads(procs.run("node-status", "node", "status", "--bounty", bounty_id, "--keystore",
                                  cleveland.keystore, *fed.chain, "--format", "json").stdout())
    assert status["bounties"][0]["unclaimed"] == books["credits"].get(cleveland.address, 0)
    sponsor = json.loads(procs.run("sponsor-status", "sponsor", "status", "--bounty", bounty_id, *fed.chain,
                                   "--format", "json").stdout())
    assert sponsor["status"] == "completed" and sponsor["funded"] == 3 * 10**18
    assert sponsor["funded"] == sponsor["credited"] + sponsor["refunded"] + sponsor["escrowed"]
    paid = fed.claim_all(procs, bounty_id, books["credits"])
    assert sum(paid.values()) == fed.ledger.bounty(bounty_id).credited
    report = fed.audit_verify(procs, bounty_id, aggregator.url)
    names = {c["name"] for c in report["checks"]}
    assert {f"scores_round_{r}" for r in range(1, rounds + 1)} <= names
    assert {f"aggregate_round_{r}" for r in range(1, rounds + 1)} <= names
    trace = json.loads(procs.run("audit-trace", "audit", "trace", "--bounty", bounty_id, *fed.chain,
                                 "--format", "json").stdout())
    assert trace["books"]["matches_contract"] is True and trace["books"]["no_overpayment"] is True
    assert trace["books"]["claimed"] == sum(paid.values())

    assert agg.alive(), agg.tail()
    # SIGTERM: uvicorn shuts down cleanly, then re-raises the signal it caught (exit code -15)
    assert agg.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in agg.stdout()
    opened_at = fed.ledger.round(bounty_id, 1).opened_at
    delays = {h.name: fed.w3.eth.get_block(committed[(a, 1)]["blockNumber"])["timestamp"] - opened_at
              for a, h in hospitals.items()}
    _timings({"test": "three rounds", "setup_module_s": fed.setup_seconds, "rounds_s": t_rounds,
              "round1_commit_after_open_s": delays, "total_s": time.monotonic() - t0})


def test_node_killed_after_committing_resumes_without_committing_twice(ganache_only, federation, procs, tmp_path):
    fed = federation
    t0 = time.monotonic()
    rounds = 2
    bounty_id = fed.create_bounty(procs, rounds=rounds, commit_window=COMMIT_WINDOW)
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator-state")
    agg = aggregator.proc
    fed.wait_until(lambda: aggregator.current(bounty_id)["status"] == "open", timeout=60, what="round 1 to open",
                   alive=(agg,))
    state_root = tmp_path / "nodes"
    victim = fed.hospitals["hungarian"]
    nodes = fed.start_nodes(procs, bounty_id, aggregator.url, state_root)
    node = nodes[victim.name]

    # Catch the victim between its commitment and its upload: as soon as it saved its update (the step just before
    # commitUpdate) freeze it, then let it run in 10 ms slices until its commitment is on chain, and SIGKILL it.
    def saved_status():
        return fed.node_state(state_root, victim.name, bounty_id)["rounds"].get("1", {}).get("status")

    status_at_stop = fed.wait_until(saved_status, timeout=120, what="the victim to save its round-1 update",
                                    alive=(agg, node), interval=0.005)
    node.signal(signal.SIGSTOP)
    slices = 0
    try:
        while fed.ledger.commitment_of(bounty_id, 1, victim.address) == ZERO_HASH:
            assert slices < 3000, "the victim never committed"
            node.signal(signal.SIGCONT)
            time.sleep(0.01)
            node.signal(signal.SIGSTOP)
            slices += 1
        uploaded_before_kill = _accepted(aggregator, 1, victim.address)
    finally:
        node.signal(signal.SIGKILL)
    assert node.wait(30) == -signal.SIGKILL
    commitment = fed.ledger.commitment_of(bounty_id, 1, victim.address)
    saved = fed.saved_update(state_root, victim.name, bounty_id, 1)
    assert fed.commitment(bounty_id, 1, victim.address, saved) == commitment  # saved before the commitment was sent

    restarted = procs.start(f"node-{victim.name}-restarted",
                            *fed.node_args(victim.name, bounty_id, aggregator.url, state_root))
    fed.wait_completed(bounty_id, timeout=300, alive=(agg,))
    t_rounds = time.monotonic() - t0
    for proc in {**nodes, victim.name: restarted}.values():
        assert proc.wait(120) == 0, proc.tail()

    books = fed.check_books(bounty_id, rounds=rounds)
    victim_commits = [e for e in books["committed"] if e["institution"] == victim.address]
    assert sorted(e["round"] for e in victim_commits) == list(range(1, rounds + 1))  # once per round, no more
    record = aggregator.round_record(bounty_id, 1)
    used = {u["institution"]: u["sha256"] for u in record["used"]}
    assert used[victim.address] == "0x" + hashlib.sha256(saved).hexdigest()  # its update was used...
    assert any(e["institution"] == victim.address and e["round"] == 1 for e in books["scored"])  # ...and scored
    assert set(used) == {h.address for h in fed.hospitals.values()}
    state = fed.node_state(state_root, victim.name, bounty_id)["rounds"]
    assert state["1"]["sha256"] == "0x" + hashlib.sha256(saved).hexdigest() and state["2"]["status"] == "uploaded"
    if not uploaded_before_kill:  # the usual case: the restarted node uploaded the saved bytes itself
        assert state["1"]["status"] == "uploaded"
        assert f"bounty {bounty_id} round 1: uploaded" in restarted.stdout()
    # (else the killed run's upload got in first; the restart then finds round 1 closed and records it
    # "not-uploaded", a local label only: the chain and the aggregator's record above are what count)
    fed.claim_all(procs, bounty_id, books["credits"])
    fed.audit_verify(procs, bounty_id, aggregator.url)
    _timings({"test": "node killed", "status_when_frozen": status_at_stop, "slices": slices,
              "uploaded_before_kill": uploaded_before_kill, "rounds_s": t_rounds, "total_s": time.monotonic() - t0})


def test_aggregator_crash_between_scoring_and_finalizing(ganache_only, federation, procs, tmp_path):
    fed = federation
    t0 = time.monotonic()
    rounds = 2
    bounty_id = fed.create_bounty(procs, rounds=rounds, commit_window=COMMIT_WINDOW)
    state_dir = tmp_path / "aggregator-state"
    crashing = fed.start_aggregator(procs, bounty_id, state_dir, name="aggregator-crashing",
                                    env=fed.env(FEDLEDGER_FAULT="crash-after:scored"))
    port = int(crashing.url.rsplit(":", 1)[1])
    fed.wait_until(lambda: crashing.current(bounty_id)["status"] == "open", timeout=60, what="round 1 to open",
                   alive=(crashing.proc,))
    state_root = tmp_path / "nodes"
    nodes = fed.start_nodes(procs, bounty_id, crashing.url, state_root)
    assert crashing.proc.wait(240) == 137, crashing.proc.tail()

    # Dead between its two durable steps: the scores are saved, the chain has not seen them.
    bounty = fed.ledger.bounty(bounty_id)
    assert (bounty.rounds_opened, bounty.rounds_finalized) == (1, 0)
    assert fed.events("RoundFinalized", bounty_id) == [] and bounty.credited == 0
    with closing(sqlite3.connect(f"file:{state_dir / 'aggregator.sqlite'}?mode=ro", uri=True)) as db:
        step, scores_json = db.execute("SELECT step, scores_json FROM rounds WHERE round = 1").fetchone()
    assert step == "scored"
    saved_scores = {a: int(v) for a, v in json.loads(scores_json)["fixed_point"].items()}
    assert set(saved_scores) == {h.address for h in fed.hospitals.values()}
    assert "round 1 scored" in crashing.proc.stdout()

    # The nodes wait the outage out; the restarted aggregator (same state dir and port) finalizes round 1 once.
    for node in nodes.values():
        assert node.alive(), node.tail()
    restarted = fed.start_aggregator(procs, bounty_id, state_dir, port=port, name="aggregator-restarted")
    fed.wait_completed(bounty_id, timeout=300, alive=(restarted.proc,))
    t_rounds = time.monotonic() - t0
    for node in nodes.values():
        assert node.wait(120) == 0, node.tail()

    books = fed.check_books(bounty_id, rounds=rounds)
    on_chain = {e["institution"]: e["score"] for e in books["scored"] if e["round"] == 1}
    assert on_chain == saved_scores  # finalized with the saved scores
    log = restarted.proc.stdout()
    assert "round 1 scored" not in log and "round 1 finalized" in log  # not recomputed, just sent
    journal = [entry["step"] for entry in restarted.round_record(bounty_id, 1)["journal"]]
    assert journal == ["opening", "open", "scoring", "scored", "finalized"]
    fed.claim_all(procs, bounty_id, books["credits"])
    fed.audit_verify(procs, bounty_id, restarted.url)
    _timings({"test": "aggregator crash", "rounds_s": t_rounds, "total_s": time.monotonic() - t0})
