"""``fedledger audit verify``: chain checks on the scripted example, and store and recompute checks against a
stand-in aggregator that computes rounds exactly as ``aggregator.service.coordinator`` does.

The stand-in (``StandInAggregator``) serves the service's JSON shape (``fedcore.protocol.RoundReport``)
and blobs; ``test_verify_against_the_real_aggregator_service`` at the end is left for the end-to-end engineer.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from aggregator.rounds import RoundInputs, compute_round
from aggregator.rules import resolve_rules
from fedcore import codec
from fedcore.commitments import bind_commitment
from fedcore.models import initial_weights
from fedcore.population import load_validation_set
from fedcore.rules import RoundRules, rules_hash, rules_hash_hex
from fedcore.task import TaskSpec, task_hash
from fedcore.types import Update
from fedledger.audit_verify import NotServed, verify_bounty
from fedledger.cli import main
from fedledger.datasets import write_heart
from ledger.audit import sync_index
from ledger.chain import connect
from ledger.client import BountyParams, FedLedgerClient
from ledger.deployment import Deployment, deploy_fedledger
from ledger.example import scripted_bounty
from tests.world import COOLDOWN, MIN_STAKE, ONE_ETH, World

CHAIN_CHECKS = ["commitments", "unique_participants", "model_chain", "money_invariant", "claims_within_credits"]


def _deployment(w) -> Deployment:
    return w.deployment


def _verify(w, tmp_path, bounty_id, **kwargs) -> dict:
    db = tmp_path / "index.sqlite"
    sync_index(w.w3, _deployment(w), db)
    return verify_bounty(w.ledger, db, bounty_id, **kwargs)


def _failed(report) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}


# ---------------------------------------------------------------------------------------------
# Chain checks on the scripted example (embedded and Ganache)


def test_scripted_example_passes_the_chain_checks(joined, tmp_path):
    w = joined
    bounty_id = scripted_bounty(w.ledger, sponsor=w.sponsor, aggregator=w.aggregator, funder=w.outsider,
                                institutions=w.insts)
    w.new_bounty()  # another bounty's events must not disturb this one's books
    report = _verify(w, tmp_path, bounty_id)
    assert report["verified"] is True, report["reasons"]
    assert [c["name"] for c in report["checks"]] == CHAIN_CHECKS
    assert report["reasons"] == [] and report["skipped"]
    assert "funded 2000000000000000000 = credited 2000000000000000000" in report["checks"][3]["detail"]


# ---------------------------------------------------------------------------------------------
# A stand-in aggregator: real updates, the service's aggregation and scoring, the service's JSON


class StandInAggregator:
    """Blobs by sha256 and round records in the service's shape; ``tamper`` swaps the bytes served for a hash."""

    def __init__(self):
        self.models: dict[str, bytes] = {}
        self.updates: dict[str, bytes] = {}
        self.records: dict[int, dict] = {}
        self.tamper: dict[str, bytes] = {}

    def round_record(self, bounty_id, round_):
        if round_ not in self.records:
            raise NotServed(f"no round {round_}")
        return json.loads(json.dumps(self.records[round_]))

    def update(self, bounty_id, round_, sha):
        sha = sha.lower().removeprefix("0x")
        if sha in self.tamper:
            return self.tamper[sha]
        if sha not in self.updates:
            raise NotServed(f"no update {sha}")
        return self.updates[sha]

    def model(self, bounty_id, sha):
        sha = sha.lower().removeprefix("0x")
        if sha not in self.models:
            raise NotServed(f"no model {sha}")
        return self.models[sha]


@pytest.fixture(scope="module")
def heart(tmp_path_factory):
    out = tmp_path_factory.mktemp("heart")
    write_heart(out)
    spec = TaskSpec.load(out / "task.json")
    validation = load_validation_set(out / "validation.csv", spec)
    return out, spec, validation


def _embedded_world() -> World:
    w3 = connect("embedded")
    accounts = w3.eth.accounts
    gov, sponsor, aggregator, outsider = accounts[:4]
    deployment = deploy_fedledger(w3, gov, governance=gov, min_stake=MIN_STAKE, leave_cooldown=COOLDOWN)
    w = World(w3, FedLedgerClient.from_deployment(w3, deployment), gov, sponsor, aggregator, outsider,
              list(accounts[4:8]), deployment=deployment)
    w.join_all()
    return w


def play(heart, tmp_path, *, strategy="fedadam", strategy_params=None, scorer="gtg", rounds=2, cheat_score=False,
         played_rules=None, greedy=False, attacker=False, rider=False, gate=None):
    """A bounty on a fresh embedded chain whose rounds are computed like the service: institutions 0-2 commit and
    upload real updates, institution 3 commits and never uploads; FedAdam carries state across rounds.

    The bounty fixes ``rules`` (written to ``tmp_path/rules.json``); the aggregator computes with ``played_rules``
    when given (a cheat: other scorer settings or another seed than the bounty's). ``greedy``: institution 3 commits
    (bound) and uploads +50 in every weight with 2^63 samples instead, which the round computation leaves out.
    ``attacker``: institution 2's update is twenty times larger noise, which the contribution gate leaves out.
    ``rider``: institution 0's update is all zeros, the others' noise larger. ``gate``: the bounty's contribution gate settings."""
    out, spec, validation = heart
    strategy_params = {"server_lr": 0.05} if strategy_params is None else strategy_params
    rules = resolve_rules(spec=spec, strategy=strategy, strategy_params=strategy_params, estimator=scorer, seed=11,
                          gate=gate)
    rules.save(tmp_path / "rules.json")
    played = played_rules or rules
    w = _embedded_world()
    params = BountyParams(task_spec_hash=task_hash(spec),
                          validation_set_hash=hashlib.sha256((out / "validation.csv").read_bytes()).digest(),
                          rules_hash=rules_hash(rules), aggregator=w.aggregator,
                          num_rounds=rounds, commit_window=600, deadline=w.now() + 30 * 86_400)
    bounty_id = w.as_(w.sponsor).create_bounty(params, ONE_ETH)
    store = StandInAggregator()
    weights = initial_weights(spec)
    model = codec.encode(weights)
    store.models[hashlib.sha256(model).hexdigest()] = model
    state_before: dict = {}
    rng = np.random.default_rng(0)
    for number in range(1, rounds + 1):
        w.as_(w.aggregator).open_round(bounty_id, hashlib.sha256(model).digest())
        used = []
        for i, inst in enumerate(w.insts[:3]):
            scale = 6.0 if attacker and i == 2 else 1.0 if rider else 0.3
            delta = {k: (rng.normal(size=v.shape) * scale).astype(np.float32) for k, v in weights.items()}
            if rider and i == 0:
                delta = {k: np.zeros_like(v) for k, v in delta.items()}
            data = codec.encode(delta)
            store.updates[hashlib.sha256(data).hexdigest()] = data
            commitment = bind_commitment(chain_id=w.w3.eth.chain_id, contract=w.ledger.address, bounty_id=bounty_id,
                                         round_=number, institution=inst, update_sha256=hashlib.sha256(data).digest())
            w.as_(inst).commit_update(bounty_id, number, commitment, 50 + 10 * i)
            used.append((inst, data, 50 + 10 * i))
        uploaded = list(used)
        if greedy:
            data = codec.encode({k: np.full_like(v, 50.0) for k, v in weights.items()})
            store.updates[hashlib.sha256(data).hexdigest()] = data
            commitment = bind_commitment(chain_id=w.w3.eth.chain_id, contract=w.ledger.address, bounty_id=bounty_id,
                                         round_=number, institution=w.insts[3], update_sha256=hashlib.sha256(data).digest())
            w.as_(w.insts[3]).commit_update(bounty_id, number, commitment, 2**63)
            uploaded.append((w.insts[3], data, 2**63))
        else:
            w.as_(w.insts[3]).commit_update(bounty_id, number, hashlib.sha256(f"ghost {number}".encode()).digest(), 5)

        # What aggregator.service.coordinator._score does.
        updates = tuple(Update(inst, codec.decode(data), n) for inst, data, n in sorted(uploaded))
        outcome = compute_round(RoundInputs(round=number, global_weights=weights, updates=updates,
                                            strategy_state=state_before, X_val=validation.X, y_val=validation.y,
                                            groups_val=validation.groups),
                                played, spec)
        new_model = outcome.model_bytes
        store.models[hashlib.sha256(new_model).hexdigest()] = new_model
        state_before = outcome.strategy_state
        fixed = dict(outcome.fixed_point)
        if cheat_score and number == rounds:
            fixed[w.insts[0]] += 1  # the aggregator posts a score the scorer did not give
        w.as_(w.aggregator).finalize_round(bounty_id, number, hashlib.sha256(new_model).digest(), fixed)
        store.records[number] = {
            "bounty_id": bounty_id, "round": number, "status": "finalized", "step": "finalized",
            "global_model_hash": "0x" + hashlib.sha256(model).hexdigest(),
            "new_model_hash": "0x" + hashlib.sha256(new_model).hexdigest(),
            "settings": {"rules": played.to_dict(), "rules_hash": rules_hash_hex(played),
                         "seed": played.round_seed(number), "selection": "all", "clients_per_round": None},
            "used": [{"institution": a, "sha256": "0x" + hashlib.sha256(d).hexdigest(), "num_samples": n}
                     for a, d, n in sorted(used)],
            "excluded": dict(outcome.rejected) if greedy else {w.insts[3]: "committed but did not upload"},
            "uploads": [{"institution": a, "sha256": "0x" + hashlib.sha256(d).hexdigest(), "size": len(d),
                         "received_at": 0.0} for a, d, _ in sorted(uploaded)],
            "scores": {"estimator": played.estimator, "fixed_point": {a: str(v) for a, v in fixed.items()}},
        }
        if attacker:  # what the coordinator records of the aggregate
            store.records[number]["aggregate"] = {"excluded_by_strategy": dict(outcome.excluded)}
        weights, model = outcome.weights, new_model
    credited = [inst for inst in w.insts[:3] if w.ledger.contribution_of(bounty_id, inst)[0]]
    if credited:  # a bounty whose rounds all lacked gain credited nobody
        w.as_(credited[0]).claim(bounty_id)
    return w, bounty_id, store


def test_recompute_reproduces_models_and_scores_bit_for_bit(heart, tmp_path):
    out, _, _ = heart
    w, bounty_id, store = play(heart, tmp_path)
    report = _verify(w, tmp_path, bounty_id, source=store, recompute=True, task=out / "task.json",
                     validation=out / "validation.csv", rules=tmp_path / "rules.json")
    assert report["verified"] is True, report["reasons"]
    names = [c["name"] for c in report["checks"]]
    assert names == CHAIN_CHECKS + ["round_records", "updates_match_commitments", "rules_hash", "task_spec_hash",
                                    "validation_set_hash", "global_model_round_1", "aggregate_round_1",
                                    "scores_round_1", "global_model_round_2", "aggregate_round_2", "scores_round_2"]
    assert report["skipped"] == []
    assert "6 stored updates hash to their commitments" in report["checks"][6]["detail"]


def test_a_tampered_stored_update_is_reported(heart, tmp_path):
    out, _, _ = heart
    w, bounty_id, store = play(heart, tmp_path)
    victim = store.records[2]["used"][1]
    store.tamper[victim["sha256"][2:]] = store.updates[victim["sha256"][2:]][:-4] + b"\x00\x00\x80\x3f"
    report = _verify(w, tmp_path, bounty_id, source=store, recompute=True, task=out / "task.json",
                     validation=out / "validation.csv", rules=tmp_path / "rules.json")
    failed = _failed(report)
    assert report["verified"] is False
    assert f"round 2: {victim['institution']}'s stored update hashes to" in failed["updates_match_commitments"]
    assert "not recomputed" in failed["aggregate_round_2"]
    assert "aggregate_round_1" not in failed and "scores_round_1" not in failed  # round 1 still replays
    assert all(r.split(":")[0] in failed for r in report["reasons"])

    # Without --recompute the store check alone catches it too; without --aggregator it is skipped, not passed.
    assert "updates_match_commitments" in _failed(_verify(w, tmp_path, bounty_id, source=store))
    plain = _verify(w, tmp_path, bounty_id)
    assert plain["verified"] is True and "updates_match_commitments" in plain["skipped"][0]


def test_a_posted_score_the_scorer_did_not_give_is_caught(heart, tmp_path):
    out, _, _ = heart
    w, bounty_id, store = play(heart, tmp_path, strategy="fedavg", strategy_params={}, scorer="exact", cheat_score=True)
    store.records[2]["scores"]["fixed_point"] = {}  # a liar would not advertise it either
    report = _verify(w, tmp_path, bounty_id, source=store, recompute=True, task=out / "task.json",
                     validation=out / "validation.csv", rules=tmp_path / "rules.json")
    failed = _failed(report)
    assert set(failed) == {"round_records", "scores_round_2"}
    assert failed["scores_round_2"].startswith(f"{w.insts[0]}: recomputed ")


def test_the_validation_set_and_task_must_be_the_bountys(heart, tmp_path):
    out, _, _ = heart
    w, bounty_id, store = play(heart, tmp_path, strategy="fedavg", strategy_params={}, rounds=1)
    other = tmp_path / "other.csv"
    other.write_bytes((out / "validation.csv").read_bytes() + b"\n")
    report = _verify(w, tmp_path, bounty_id, source=store, recompute=True, task=out / "task.json", validation=other,
                     rules=tmp_path / "rules.json")
    failed = _failed(report)
    assert report["verified"] is False and set(failed) == {"validation_set_hash", "recompute"}
    assert "the chain has" in failed["validation_set_hash"]


@pytest.mark.parametrize("change", [{"seed": 12}, {"estimator": "loo", "estimator_params": {}}],
                         ids=["another seed", "another scorer"])
def test_an_aggregator_that_scores_with_other_rules_than_the_bountys_is_caught(heart, tmp_path, change):
    """The bounty fixed GTG with seed 11; the aggregator scores with another seed or another scorer. Audited with
    the bounty's rules, the recomputed scores differ; handed the aggregator's rules, their hash is refused first."""
    out, spec, _ = heart
    fixed = resolve_rules(spec=spec, strategy="fedavg", strategy_params={}, estimator="tmc", seed=11)
    played = RoundRules.from_dict({**fixed.to_dict(), **change})
    w, bounty_id, store = play(heart, tmp_path, strategy="fedavg", strategy_params={}, scorer="tmc", rounds=1,
                               played_rules=played)
    inputs = dict(source=store, recompute=True, task=out / "task.json", validation=out / "validation.csv")
    failed = _failed(_verify(w, tmp_path, bounty_id, **inputs, rules=tmp_path / "rules.json"))
    assert set(failed) == {"scores_round_1"}  # same model, other scores: the books replay, the scores do not
    played.save(tmp_path / "played.json")
    failed = _failed(_verify(w, tmp_path, bounty_id, **inputs, rules=tmp_path / "played.json"))
    assert set(failed) == {"rules_hash", "recompute"} and "the chain has" in failed["rules_hash"]


def test_the_auditor_replays_what_the_round_computation_left_out(heart, tmp_path):
    """A sample count of 2^63 is left out by the task's bounds; the replay leaves it out for the same recorded reason,
    and a record that gives another reason is caught."""
    out, _, _ = heart
    w, bounty_id, store = play(heart, tmp_path, strategy="fedavg", strategy_params={}, rounds=1, greedy=True)
    given = {"recompute": True, "task": out / "task.json", "validation": out / "validation.csv",
             "rules": tmp_path / "rules.json"}
    report = _verify(w, tmp_path, bounty_id, source=store, **given)
    assert report["verified"] is True, report["reasons"]
    check = next(c for c in report["checks"] if c["name"] == "exclusions_round_1")
    assert "leaves out the same 1 update(s)" in check["detail"]
    assert store.records[1]["excluded"] == {w.insts[3]: f"declared {2**63} samples, outside the task's range [1, 1000000]"}
    store.records[1]["excluded"] = {w.insts[3]: "committed but did not upload"}  # a record that hides why
    failed = _failed(_verify(w, tmp_path, bounty_id, source=store, **given))
    assert set(failed) == {"exclusions_round_1"} and "recorded 'committed but did not upload'" in failed["exclusions_round_1"]


def test_the_auditor_recomputes_the_gates_exclusion_of_an_attacker(heart, tmp_path):
    """The aggregator leaves the attacker's update out of both rounds' aggregates and still posts its negative score:
    the replay agrees bit for bit, and a record that hides the exclusion is caught. An aggregator that averages the
    attacker in anyway, under rules without the gate, is caught by the model hashes, though it posts the same
    scores."""
    out, _, _ = heart
    given = {"recompute": True, "task": out / "task.json", "validation": out / "validation.csv",
             "rules": tmp_path / "rules.json"}
    w, bounty_id, store = play(heart, tmp_path, strategy="fedavg", strategy_params={}, scorer="exact", attacker=True)
    attacker = w.insts[2]
    for number in (1, 2):
        assert store.records[number]["aggregate"]["excluded_by_strategy"][attacker].startswith("harmful: ")
    for number in (1, 2):
        scores = store.records[number]["scores"]["fixed_point"]
        assert int(scores[attacker]) < 0 and set(scores) == set(w.insts[:3])  # scored, on chain
    report = _verify(w, tmp_path, bounty_id, source=store, **given)
    assert report["verified"] is True, report["reasons"]
    assert {"left_out_round_1", "left_out_round_2"} <= {c["name"] for c in report["checks"]}
    assert w.ledger.contribution_of(bounty_id, attacker)[0] == 0
    store.records[2]["aggregate"]["excluded_by_strategy"] = {}  # a record that hides the exclusion
    failed = _failed(_verify(w, tmp_path, bounty_id, source=store, **given))
    assert set(failed) == {"left_out_round_2"} and "recorded None" in failed["left_out_round_2"]

    fixed = resolve_rules(spec=heart[1], strategy="fedavg", strategy_params={}, estimator="exact", seed=11)
    ungated = RoundRules.from_dict({**fixed.to_dict(), "exclude_harmful": False})
    other = tmp_path / "ungated"
    other.mkdir()
    w, bounty_id, store = play(heart, other, strategy="fedavg", strategy_params={}, scorer="exact", attacker=True,
                               played_rules=ungated)
    failed = _failed(_verify(w, other, bounty_id, source=store, **{**given, "rules": other / "rules.json"}))
    assert {"left_out_round_1", "aggregate_round_1"} <= set(failed)
    assert "the chain has" in failed["aggregate_round_1"]
    # Later rounds are replayed from the chain's own models: whether they differ is the bounty's rules' verdict on
    # them. Here, from the model the attacker already poisoned, its round-2 harm is within its spread over the
    # validation rows (row_spread), so round 2 replays as played; the first deviation is what the audit must catch.


def test_the_auditor_replays_a_round_that_pays_nobody(heart, tmp_path):
    """Two noise updates (kept: the gate's margin is wide) and a zero update that halves their harm, so it is valued positive
    in a round whose gain is negative: nothing is posted positive, nobody is credited, and the replay agrees. An
    aggregator that pays the zero update anyway is caught by the scores."""
    out, _, _ = heart
    given = {"recompute": True, "task": out / "task.json", "validation": out / "validation.csv"}
    settings = {"strategy": "fedavg", "strategy_params": {}, "scorer": "exact", "rounds": 1, "rider": True,
                "gate": {"harm_margin": 1.0}}
    w, bounty_id, store = play(heart, tmp_path, **settings)
    posted = {who: int(v) for who, v in store.records[1]["scores"]["fixed_point"].items()}
    assert posted[w.insts[0]] == 0 and max(posted.values()) <= 0
    assert w.ledger.contribution_of(bounty_id, w.insts[0])[0] == 0
    report = _verify(w, tmp_path, bounty_id, source=store, **given, rules=tmp_path / "rules.json")
    assert report["verified"] is True, report["reasons"]

    bountys = RoundRules.load(tmp_path / "rules.json")
    other = tmp_path / "paid"
    other.mkdir()
    w, bounty_id, store = play(heart, other, **settings,
                               played_rules=RoundRules.from_dict({**bountys.to_dict(), "pay_only_gain": False}))
    assert int(store.records[1]["scores"]["fixed_point"][w.insts[0]]) > 0  # the rule is what withholds the pay
    failed = _failed(_verify(w, other, bounty_id, source=store, **given, rules=other / "rules.json"))
    assert set(failed) == {"scores_round_1"}


def test_a_record_that_disagrees_with_the_chain_is_reported(heart, tmp_path):
    w, bounty_id, store = play(heart, tmp_path, strategy="fedavg", strategy_params={}, rounds=1)
    store.records[1]["used"].pop()  # claims to have used fewer updates than it scored on chain
    store.records[1]["excluded"] = {}
    failed = _failed(_verify(w, tmp_path, bounty_id, source=store))
    # the record is where a scored update's hash is found (the chain holds it bound to its sender): none, no bytes
    assert set(failed) == {"round_records", "updates_match_commitments"}
    assert "not in the record" in failed["round_records"] and "no reason given" in failed["round_records"]
    assert "is recorded" in failed["updates_match_commitments"]


# ---------------------------------------------------------------------------------------------
# The command line, over HTTP


class _Handler(BaseHTTPRequestHandler):
    store: StandInAggregator
    bounty_id: int

    def do_GET(self):  # noqa: N802 - http.server's name
        parts = self.path.strip("/").split("/")
        try:
            if parts[:2] != ["bounties", str(self.bounty_id)]:
                raise NotServed("unknown bounty")
            if parts[2] == "rounds" and len(parts) == 4:
                body = json.dumps(self.store.round_record(self.bounty_id, int(parts[3]))).encode()
            elif parts[2] == "rounds" and len(parts) == 6 and parts[4] == "updates":
                body = self.store.update(self.bounty_id, int(parts[3]), parts[5])
            elif parts[2] == "models" and len(parts) == 4:
                body = self.store.model(self.bounty_id, parts[3])
            else:
                raise NotServed("no such route")
        except (NotServed, ValueError, IndexError) as error:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(json.dumps({"detail": str(error)}).encode())
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_cli_exit_codes_over_http(heart, tmp_path, monkeypatch, capsys):
    out, _, _ = heart
    w, bounty_id, store = play(heart, tmp_path, strategy="fedavg", strategy_params={}, rounds=1)
    handler = type("Handler", (_Handler,), {"store": store, "bounty_id": bounty_id})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr("ledger.chain.connect", lambda rpc=None, **kwargs: w.w3)
        deployment = _deployment(w).save(tmp_path / "deployment.json")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = ["audit", "verify", "--bounty", str(bounty_id), "--deployment", str(deployment), "--aggregator", url,
                "--recompute", "--task", str(out / "task.json"), "--validation", str(out / "validation.csv"),
                "--rules", str(tmp_path / "rules.json")]
        assert main(args + ["--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["verified"] is True and len(report["checks"]) == 13

        store.tamper[store.records[1]["used"][0]["sha256"][2:]] = b"not an update"
        assert main(args) == 1
        text = capsys.readouterr().out
        assert "FAIL  updates_match_commitments" in text and text.rstrip().endswith("check(s) failed")

        assert main(["audit", "verify", "--bounty", "77", "--deployment", str(deployment)]) == 2
        assert capsys.readouterr().err.startswith("error: unknown bounty id 77")
        assert main(["audit", "verify", "--bounty", str(bounty_id), "--deployment", str(deployment),
                     "--recompute"]) == 2
        assert "--recompute needs" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()
    # The aggregator gone: a usage error in one line, not a failed verification.
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"error: no aggregator answers at {url}")


# ---------------------------------------------------------------------------------------------
# Against the real aggregator service (its coordinator and HTTP API, in process on the embedded chain)


def test_verify_against_the_aggregator_service_in_process(tmp_path):
    """The service's own harness (tests/aggregator/service/conftest.py): a 2-round FedAdam bounty scored by the real
    ``score_round``; the audit downloads everything through the service's HTTP API and recomputes it bit for bit."""
    from aggregator.service.coordinator import Coordinator
    from fedledger.audit_verify import HttpAggregator
    from tests.aggregator.service.conftest import make_world

    world = make_world(tmp_path / "world")
    h = world.harness(tmp_path, rounds=2, strategy="fedadam", strategy_params={"server_lr": 0.1})
    context = h.context(seed=5)
    try:
        client = h.client(context)
        coordinator = Coordinator(context)
        for number in (1, 2):
            assert coordinator.run_until("opened") == "opened"
            for i, inst in enumerate(h.insts):
                data = h.update(0.02 * (i + 1) * (-1) ** number)
                h.commit(inst, number, data, samples=10 + i)
                assert h.upload(client, inst, number, data).status_code in (200, 201, 202)
            assert coordinator.run_until("finalized") == "finalized"
        assert coordinator.step() == "completed"

        deployment = Deployment.load(h.deployment_path)
        db = tmp_path / "index.sqlite"
        sync_index(h.w3, deployment, db)
        source = HttpAggregator("http://testserver", client=client)
        report = verify_bounty(h.ledger, db, h.bounty_id, source=source, recompute=True, task=h.task_path,
                               validation=h.validation_path, rules=h.rules_path)
        assert report["verified"] is True, report["reasons"]
        assert sum(c["name"].startswith("scores_round_") for c in report["checks"]) == 2

        # One stored update overwritten with other bytes: the service no longer serves it; the audit says so.
        stored = sorted((tmp_path / "state" / "updates").iterdir())[0]
        stored.write_bytes(stored.read_bytes()[:-1] + b"\x00")
        report = verify_bounty(h.ledger, db, h.bounty_id, source=source, recompute=True, task=h.task_path,
                               validation=h.validation_path, rules=h.rules_path)
        assert report["verified"] is False and "updates_match_commitments" in _failed(report)
    finally:
        context.close()
