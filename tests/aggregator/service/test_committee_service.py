"""The aggregator's side of a scoring committee (bounty with one scorer besides the aggregator, quorum 2).

* Request authentication: a round's updates go to committee members only (a request signed by a member's key,
  checked against the chain's ``CommitteeNamed``, recent), and to nobody before the round's commit window closed on
  chain, even once the aggregator closed the round early; the public route serves them only once the round is over.
* Attestations: a non-member's is refused; a member's mismatching one is kept (and shown) but does not count; with
  the matching one the round is finalized through ``finalizeRoundAttested``, also after a restart (attestations are
  in the round state).
* No quorum: once the round stalled (window plus recovery grace), the coordinator lapses it: nothing credited, the
  next round starts from the same model and round state with the whole escrow as its reward.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from aggregator.service import committee as committee_view
from aggregator.service.coordinator import Coordinator
from fedcore.attestations import sign_fetch, sign_outcome
from fedcore.protocol import SCORER_SIGNATURE_HEADER, SCORER_TIME_HEADER
from ledger.chain import fund_account
from ledger.client import DEFAULT_RECOVERY_GRACE
from tests.aggregator.service.conftest import ONE_ETH, WINDOW, local_account
from tests.aggregator.service.test_service_coordinator import play_uploads, scored_on_chain

SCORER = local_account("committee scorer")


@pytest.fixture
def committee(service_world, tmp_path):
    fund_account(service_world.w3, SCORER.address, 10 * ONE_ETH)
    h = service_world.harness(tmp_path, scorers=(SCORER.address,), quorum=2)
    yield h
    for context in h.contexts:
        context.close()


def fetch(h, client, account, round_: int, item: str = "list", *, at: int | None = None):
    at = int(time.time()) if at is None else at
    signature = sign_fetch(account, chain_id=h.w3.eth.chain_id, contract=h.ledger.address, bounty_id=h.bounty_id,
                           round_=round_, item=item, issued_at=at)
    path = f"/bounties/{h.bounty_id}/rounds/{round_}/committee/updates" + ("" if item == "list" else f"/{item}")
    return client.get(path, headers={SCORER_SIGNATURE_HEADER: signature, SCORER_TIME_HEADER: str(at)})


def attest(h, client, account, round_: int, outcome: dict, *, bump: int = 0):
    scores = [int(s) + bump for s in outcome["scores"]]
    signature = sign_outcome(account, chain_id=h.w3.eth.chain_id, contract=h.ledger.address, bounty_id=h.bounty_id,
                             round_=round_, new_model_hash=bytes.fromhex(outcome["new_model_hash"]),
                             participants=outcome["participants"], scores=scores)
    return client.post(f"/bounties/{h.bounty_id}/rounds/{round_}/attestations", json={
        "scorer": account.address, "signature": "0x" + signature.hex(),
        "outcome": {"new_model_hash": "0x" + outcome["new_model_hash"], "participants": outcome["participants"],
                    "scores": [str(s) for s in scores]}})


def events(h, name: str) -> list:
    logs = getattr(h.ledger.contract.events, name)().get_logs(from_block=0, argument_filters={"bountyId": h.bounty_id})
    return [log["args"] for log in logs if log["args"]["bountyId"] == h.bounty_id]


def started(h):
    context = h.context()
    return context, h.client(context), Coordinator(context)


def plain_scorer(h, client):
    """The other member's :class:`fedledger.scorer.Scorer` over this app (no round state to replay)."""
    from fedcore.population import load_validation_set
    from fedcore.rules import RoundRules
    from fedcore.task import TaskSpec
    from fedledger.scorer import CommitteeAggregator, Scorer

    spec, rules = TaskSpec.load(h.task_path), RoundRules.load(h.rules_path)
    source = CommitteeAggregator("http://testserver", SCORER, chain_id=h.w3.eth.chain_id, contract=h.ledger.address,
                                 bounty_id=h.bounty_id, client=client)
    return Scorer(h.as_(SCORER), SCORER, source, h.bounty_id, spec, rules, load_validation_set(h.validation_path, spec))


def scored_round(h, client, coordinator) -> None:
    assert coordinator.step() == "opened"
    play_uploads(h, client, 1, h.insts)
    assert coordinator.run_until("scored") == "scored"


def test_updates_go_to_members_only_and_to_nobody_before_the_window_closes(committee):
    h = committee
    context, client, coordinator = started(h)
    assert coordinator.step() == "opened"
    assert fetch(h, client, SCORER, 1).json()["code"] == "round_open"  # open: nobody
    sent = play_uploads(h, client, 1, h.insts)
    sha = hashlib.sha256(next(iter(sent.values()))).hexdigest()
    assert coordinator.run_until("closed") == "closed"  # every invitee uploaded: closed early, window still open
    for item in ("list", sha):
        early = fetch(h, client, SCORER, 1, item)
        assert early.status_code == 403 and early.json()["code"] == "round_open", early.text
    h.advance(WINDOW + 1)
    listing = fetch(h, client, SCORER, 1)
    assert listing.status_code == 200, listing.text
    assert {u["institution"] for u in listing.json()["uploads"]} == set(sent)
    assert fetch(h, client, SCORER, 1, sha).content in sent.values()
    assert fetch(h, client, h.aggregator, 1).status_code == 200  # the aggregator sits on the committee too
    # a non-member, however well signed, gets nothing; nor does anyone through the public route yet
    for item in ("list", sha):
        refused = fetch(h, client, h.outsider, 1, item)
        assert refused.status_code == 403 and refused.json()["code"] == "not_scorer"
    public = client.get(f"/bounties/{h.bounty_id}/rounds/1/updates/{sha}")
    assert public.status_code == 403 and public.json()["code"] == "round_open"
    assert client.get(f"/bounties/{h.bounty_id}/rounds/1").json()["uploads"] == []
    # unsigned, stale, or signed for another item
    assert client.get(f"/bounties/{h.bounty_id}/rounds/1/committee/updates").json()["code"] == "unsigned"
    assert fetch(h, client, SCORER, 1, at=int(time.time()) - 3600).json()["code"] == "bad_signature"
    signature = sign_fetch(SCORER, chain_id=h.w3.eth.chain_id, contract=h.ledger.address, bounty_id=h.bounty_id,
                           round_=1, item="list", issued_at=int(time.time()))
    replayed = client.get(f"/bounties/{h.bounty_id}/rounds/1/committee/updates/{sha}",
                          headers={SCORER_SIGNATURE_HEADER: signature, SCORER_TIME_HEADER: str(int(time.time()))})
    assert replayed.status_code == 403 and replayed.json()["code"] == "not_scorer"  # recovers to someone else


def test_quorum_of_two_finalizes_with_the_matching_attestation_also_after_a_restart(committee):
    h = committee
    context, client, coordinator = started(h)
    scored_round(h, client, coordinator)
    own = committee_view.own_outcome(context, context.state.round(1))
    # a non-member's attestation is refused and not kept
    refused = attest(h, client, h.outsider, 1, own)
    assert refused.status_code == 403 and refused.json()["code"] == "not_scorer"
    # the member's attestation of another outcome is kept and shown, but does not count
    other = attest(h, client, SCORER, 1, own, bump=1)
    assert other.status_code == 202 and other.json()["matches"] is False
    assert coordinator.step() == "waiting"
    shown = client.get(f"/bounties/{h.bounty_id}/rounds/1").json()["attestations"]
    assert [(a["scorer"], a["matches"]) for a in shown] == [(SCORER.address, False)]
    # the matching one replaces it; a restarted coordinator finalizes with it
    assert attest(h, client, SCORER, 1, own).json()["matches"] is True
    context.close()
    context = h.context()
    assert Coordinator(context).step() == "finalized"
    assert h.ledger.round(h.bounty_id, 1).finalized
    attested = events(h, "OutcomeAttested")
    assert {a["scorer"] for a in attested} == {h.aggregator.address, SCORER.address}
    assert scored_on_chain(h, 1) == context.state.round(1).fixed_point_scores
    late = attest(h, h.client(context), SCORER, 1, own)
    assert late.status_code == 409 and late.json()["code"] == "round_closed"


def test_without_a_quorum_the_round_lapses_and_its_reward_carries(committee):
    h = committee
    context, client, coordinator = started(h)
    scored_round(h, client, coordinator)
    escrow = h.ledger.escrow_of(h.bounty_id)
    assert coordinator.step() == "waiting"
    h.advance(WINDOW + DEFAULT_RECOVERY_GRACE + 1)
    assert coordinator.step() == "lapsed"
    record = context.state.round(1)
    assert record.step == "lapsed"
    assert [e["round"] for e in events(h, "RoundLapsed")] == [1]
    assert events(h, "ContributionScored") == [] and h.ledger.escrow_of(h.bounty_id) == escrow
    public = client.get(f"/bounties/{h.bounty_id}/rounds/1/updates/{record.used[0]['sha256']}")
    assert public.status_code == 200  # the round is over: anyone may audit it
    # round 2 trains from the same model and round state, for the whole escrow
    assert coordinator.step() == "opened"
    second = context.state.round(2)
    assert second.global_model_sha == record.global_model_sha and second.state_before_sha == record.state_before_sha
    play_uploads(h, client, 2, h.insts)
    assert coordinator.run_until("scored") == "scored"
    own = committee_view.own_outcome(context, context.state.round(2))
    assert attest(h, client, SCORER, 2, own).status_code == 202
    assert coordinator.step() == "finalized"
    finalized = events(h, "RoundFinalized")
    assert [(e["round"], e["reward"]) for e in finalized] == [(2, escrow)]


def test_a_scorer_recomputes_each_round_from_what_members_may_fetch_and_its_attestation_finalizes_it(committee):
    """The scorer's own computation (``fedledger.scorer.Scorer``, over this app through its committee routes): the same
    outcome as the aggregator's in round 1 and, from the round state it replays from the chain, in round 2."""
    from fedcore.population import load_validation_set
    from fedcore.rules import RoundRules
    from fedcore.task import TaskSpec
    from fedledger.scorer import CommitteeAggregator, Scorer, replayed_state
    from ledger.deployment import Deployment

    h = committee
    context, client, coordinator = started(h)
    spec, rules = TaskSpec.load(h.task_path), RoundRules.load(h.rules_path)
    validation = load_validation_set(h.validation_path, spec)
    source = CommitteeAggregator("http://testserver", SCORER, chain_id=h.w3.eth.chain_id, contract=h.ledger.address,
                                 bounty_id=h.bounty_id, client=client)
    ledger = h.as_(SCORER)
    deployment = Deployment.load(h.deployment_path)
    replayed = []

    def replay(number: int) -> dict:
        replayed.append(number)
        return replayed_state(ledger, deployment, h.tmp / "index.sqlite", source, h.bounty_id, spec=spec, rules=rules,
                              validation=validation)

    scorer = Scorer(ledger, SCORER, source, h.bounty_id, spec, rules, validation, replay=replay)
    for round_ in (1, 2):
        assert coordinator.step() == "opened"
        play_uploads(h, client, round_, h.insts)
        assert coordinator.run_until("scored") == "scored"
        h.advance(WINDOW + 1)
        result, _ = scorer.compute(round_)
        own = committee_view.own_outcome(context, context.state.round(round_))
        assert (result.new_model_hash, result.participants, [str(s) for s in result.scores]) == (
            "0x" + own["new_model_hash"], own["participants"], own["scores"])
        assert result.unserved == {}  # an honest aggregator serves every committed invitee's upload
        scorer.attest(result)
        assert coordinator.step() == "finalized"
        assert scorer.settle(result).status == "agreed"
    assert replayed == []  # round 2 extends the round state the scorer carried from round 1 (replay: next test)


def test_a_scorer_names_a_committed_update_the_aggregator_does_not_serve(committee, caplog):
    """A dishonest aggregator drops an accepted upload without a word. Every scorer recomputes from what it serves, so
    they would all agree without it; the scorer compares with the chain's commitments and names the institution in
    its record and its log."""
    h = committee
    context, client, coordinator = started(h)
    scorer = plain_scorer(h, client)
    assert coordinator.step() == "opened"
    play_uploads(h, client, 1, h.insts)
    dropped = h.insts[0].address
    context.state._execute("DELETE FROM uploads WHERE round = 1 AND institution = ?", (dropped,))  # silently
    h.advance(WINDOW + 1)
    assert coordinator.run_until("scored") == "scored"
    with caplog.at_level("WARNING", logger="fedledger.scorer"):
        result, _ = scorer.compute(1)
    assert list(result.unserved) == [dropped] and "serves no upload" in result.unserved[dropped]
    assert result.refused == {}  # no reason was recorded for it
    assert result.to_dict()["unserved"] == result.unserved and dropped not in result.participants
    assert dropped in caplog.text


def test_the_listing_gives_the_aggregator_s_reason_and_the_scorer_says_unserved_only_without_one(committee):
    """An invitee that committed but whose upload was refused (here: bytes other than the committed ones) is listed
    with the refusal's code, and the scorer records it under ``refused`` with that reason; an upload dropped
    without a word stays ``unserved``. A refusal of an uninvited signer is not noted."""
    h = committee
    context, client, coordinator = started(h)
    scorer = plain_scorer(h, client)
    assert coordinator.step() == "opened"
    refused, dropped, honest = h.insts
    h.commit(refused, 1, h.update(0.05), 10)
    answer = h.upload(client, refused, 1, h.update(0.06))  # not what it committed to
    assert answer.status_code == 409 and answer.json()["code"] == "hash_mismatch"
    play_uploads(h, client, 1, [dropped, honest])
    assert h.upload(client, h.outsider, 1, h.update(0.07)).status_code == 403  # not invited: nothing noted
    context.state._execute("DELETE FROM uploads WHERE round = 1 AND institution = ?", (dropped.address,))  # silently
    h.advance(WINDOW + 1)
    assert coordinator.run_until("scored") == "scored"
    listing = fetch(h, client, SCORER, 1).json()
    assert [(r["institution"], r["code"]) for r in listing["refused"]] == [(refused.address, "hash_mismatch")]
    result, _ = scorer.compute(1)
    assert list(result.refused) == [refused.address] and result.refused[refused.address].startswith("hash_mismatch: ")
    assert list(result.unserved) == [dropped.address]
    assert result.participants == [honest.address]
    # the aggregator's round record and the scorer's left-out list give the refused invitee the same reason
    reason = context.state.round(1).excluded[refused.address]
    assert reason.startswith("committed; its upload was refused (hash_mismatch: ")
    assert result.left_out[refused.address] == reason
    assert context.state.round(1).excluded[dropped.address] == "committed but did not upload"
    assert result.to_dict()["refused"] == result.refused


def test_a_serving_scorer_computes_each_round_once_and_attests_what_a_fresh_replay_attests(service_world, tmp_path,
                                                                                          counting_compute):
    """``fedledger scorer serve``'s loop over three rounds (the second lapses: its attestation is lost) with one
    Scorer: one round computation per round and no replay (the round state is carried, checked against the model
    the chain opened each round with); a scorer started fresh for round 3 replays rounds 1-2 from the chain and
    computes the same outcome from the same round state."""
    from fedcore import codec
    from fedcore.population import load_validation_set
    from fedcore.rules import RoundRules
    from fedcore.task import TaskSpec
    from fedledger.scorer import CommitteeAggregator, Scorer, replayed_state, serve_rounds
    from ledger.deployment import Deployment
    from tests.aggregator.service.conftest import CountingCompute

    fund_account(service_world.w3, SCORER.address, 10 * ONE_ETH)
    h = service_world.harness(tmp_path, strategy="fedadam", strategy_params={"server_lr": 0.05},  # a stateful one
                              scorers=(SCORER.address,), quorum=2, rounds=3)
    try:
        context, client, coordinator = started(h)
        spec, rules = TaskSpec.load(h.task_path), RoundRules.load(h.rules_path)
        validation = load_validation_set(h.validation_path, spec)
        source = CommitteeAggregator("http://testserver", SCORER, chain_id=h.w3.eth.chain_id,
                                     contract=h.ledger.address, bounty_id=h.bounty_id, client=client)
        ledger, deployment = h.as_(SCORER), Deployment.load(h.deployment_path)
        replayed = []

        def replay(number: int) -> dict:
            replayed.append(number)
            return replayed_state(ledger, deployment, h.tmp / "index.sqlite", source, h.bounty_id, spec=spec,
                                  rules=rules, validation=validation)

        scorer = Scorer(ledger, SCORER, source, h.bounty_id, spec, rules, validation, replay=replay,
                        computation=counting_compute)
        fresh_compute = CountingCompute()
        fresh = Scorer(ledger, SCORER, source, h.bounty_id, spec, rules, validation, replay=replay,
                       computation=fresh_compute)
        fresh_results = []
        assert coordinator.step() == "opened"

        def score_round(number: int):
            play_uploads(h, client, number, h.insts)
            assert coordinator.run_until("scored") == "scored"
            h.advance(WINDOW + 1)
            result, _ = scorer.compute(number)
            if number == 3:  # before round 3 is finalized, a scorer started now replays rounds 1-2
                fresh_results.append(fresh.compute(number)[0])
            if number == 2:
                h.advance(DEFAULT_RECOVERY_GRACE + 1)
                assert coordinator.step() == "lapsed"
            else:
                scorer.attest(result)
                assert coordinator.step() == "finalized"
            settled = scorer.settle(result)
            if number < 3:
                assert coordinator.step() == "opened"
            return settled

        emitted = []
        serve_rounds(scorer, score_round, emitted.append, poll_interval=0.01)
        assert [(r.round, r.status) for r in emitted] == [(1, "agreed"), (2, "lapsed"), (3, "agreed")]
        assert counting_compute.calls == 3  # one round computation per round; only the fresh scorer replayed:
        assert int(counting_compute.inputs[2].strategy_state["step"]) == 1  # after round 1 (round 2 lapsed)

        assert replayed == [3] and fresh_compute.calls == 1
        again = fresh_results[0]
        last = emitted[-1]
        assert (again.new_model_hash, again.participants, again.scores) == (
            last.new_model_hash, last.participants, last.scores)
        assert codec.encode(fresh_compute.inputs[0].strategy_state) == codec.encode(
            counting_compute.inputs[2].strategy_state)
    finally:
        for context in h.contexts:
            context.close()
