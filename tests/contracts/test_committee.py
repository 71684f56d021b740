"""The scoring committee: a round is finalized only with a quorum of matching EIP-712 attestations."""

from web3 import Web3

from fedcore.attestations import sign_outcome
from fedcore.types import Digest
from ledger.audit import sync_index, trace
from ledger.client import BountyStatus, FedLedgerClient
from ledger.deployment import deploy_fedledger
from tests.world import COOLDOWN, MIN_STAKE, ONE_ETH, WINDOW, h, reverts


class Committee:
    """A bounty whose aggregator and two named scorers (all with keys) decide with quorum 2, one round committed."""

    def __init__(self, w, *, quorum=2, rounds=1):
        self.w = w
        self.aggregator, self.sponsor_scorer, self.auditor = (w.keyed(n, join=False) for n in ("agg", "spon", "aud"))
        self.bounty_id = w.new_bounty(rounds=rounds, aggregator=self.aggregator.address, quorum=quorum,
                                      scorers=(self.sponsor_scorer.address, self.auditor.address))
        self.open_and_commit(1)

    def open_and_commit(self, round_, model=h("m0")):
        self.round = round_
        self.w.as_(self.aggregator).open_round(self.bounty_id, model)
        self.w.commit(self.bounty_id, round_, self.w.insts[:2])
        self.scores = {self.w.insts[0]: 2 * 10**17, self.w.insts[1]: 10**17}
        self.participants, self.ordered = self.w.ledger.outcome(self.bounty_id, round_, self.scores)

    def sign(self, account, *, model=h("m1"), bounty_id=None, round_=None, contract=None, scores=None):
        return sign_outcome(account, chain_id=self.w.w3.eth.chain_id, contract=contract or self.w.ledger.address,
                            bounty_id=bounty_id or self.bounty_id, round_=round_ or self.round, new_model_hash=model,
                            participants=self.participants, scores=scores or self.ordered)

    def finalize(self, caller, attestations, model=h("m1")):
        return self.w.as_(caller).finalize_round(self.bounty_id, self.round, model, self.scores, attestations)


def test_quorum_of_matching_attestations_finalizes_and_records_each_scorer(joined):
    c = Committee(joined)
    assert joined.ledger.committee_of(c.bounty_id) == (2, 2)
    receipt = c.finalize(c.aggregator, [c.sign(c.auditor)])
    attested = joined.ledger.events(receipt, "OutcomeAttested")
    digest = joined.ledger.outcome_digest(c.bounty_id, 1, h("m1"), c.participants, c.ordered)
    assert [(e["scorer"], e["outcomeDigest"]) for e in attested] == [
        (c.aggregator.address, digest), (c.auditor.address, digest)]
    assert joined.ledger.round(c.bounty_id, 1).finalized
    assert joined.ledger.contribution_of(c.bounty_id, joined.insts[0])[0] > 0


def test_fewer_than_quorum_matching_attestations_cannot_finalize(joined):
    w = joined
    c = Committee(w, quorum=3)
    agg = c.aggregator
    with reverts("QuorumNotReached", bountyId=c.bounty_id, round=1, matching=1, quorum=3):
        w.as_(agg).finalize_round(c.bounty_id, 1, h("m1"), c.scores)  # the aggregator alone
    with reverts("QuorumNotReached", matching=2, quorum=3):
        c.finalize(agg, [c.sign(c.auditor)])
    with reverts("QuorumNotReached", matching=2, quorum=3):  # the same scorer twice counts once
        c.finalize(agg, [c.sign(c.auditor), c.sign(c.auditor)])
    with reverts("QuorumNotReached", matching=2, quorum=3):  # an attestation of another outcome does not count
        c.finalize(agg, [c.sign(c.auditor), c.sign(c.sponsor_scorer, model=h("other"))])
    with reverts("QuorumNotReached", matching=2, quorum=3):  # ... nor one over other scores
        c.finalize(agg, [c.sign(c.auditor), c.sign(c.sponsor_scorer, scores=[1, 1])])
    with reverts("QuorumNotReached", matching=2, quorum=3):  # nor garbage
        c.finalize(agg, [c.sign(c.auditor), b"\x01" * 65, b""])
    assert not w.ledger.round(c.bounty_id, 1).finalized
    c.finalize(agg, [c.sign(c.auditor), c.sign(c.sponsor_scorer)])
    assert w.ledger.round(c.bounty_id, 1).finalized


def test_non_member_attestation_does_not_count_and_non_member_cannot_finalize(joined):
    w = joined
    c = Committee(w)
    stranger = w.keyed("stranger", join=False)
    with reverts("QuorumNotReached", matching=1, quorum=2):
        c.finalize(c.aggregator, [c.sign(stranger)])
    with reverts("NotScorer", bountyId=c.bounty_id, caller=stranger.address):
        c.finalize(stranger, [c.sign(c.auditor), c.sign(c.sponsor_scorer)])
    # Any member may submit: a scorer with the aggregator's attestation.
    c.finalize(c.auditor, [c.sign(c.aggregator)])
    assert w.ledger.round(c.bounty_id, 1).finalized


def test_attestation_cannot_be_replayed_to_another_round_bounty_or_contract(joined):
    w = joined
    c = Committee(w, rounds=2)
    for wrong in (dict(round_=2), dict(bounty_id=c.bounty_id + 1),
                  dict(contract=Web3.to_checksum_address("0x" + "22" * 20))):
        with reverts("QuorumNotReached", matching=1, quorum=2):
            c.finalize(c.aggregator, [c.sign(c.auditor, **wrong)])
    round1 = c.sign(c.auditor)
    c.finalize(c.aggregator, [round1])
    c.open_and_commit(2, model=h("m1"))  # same participants, scores and model in round 2: round 1's vote is void
    with reverts("QuorumNotReached", matching=1, quorum=2):
        c.finalize(c.aggregator, [round1])
    # A second deployment on the same chain refuses this deployment's attestations.
    other = FedLedgerClient.from_deployment(w.w3, deploy_fedledger(w.w3, w.gov, governance=w.gov, min_stake=MIN_STAKE,
                                                                   leave_cooldown=COOLDOWN))
    assert other.outcome_digest(c.bounty_id, 2, h("m1"), c.participants, c.ordered) != w.ledger.outcome_digest(
        c.bounty_id, 2, h("m1"), c.participants, c.ordered)


def test_dissent_stays_on_chain_is_outvoted_and_the_audit_trace_shows_every_scorer(joined, tmp_path):
    w = joined
    c = Committee(w)
    mine = w.ledger.outcome_digest(c.bounty_id, 1, h("mine"), c.participants, [1, 1])
    receipt = w.as_(c.sponsor_scorer).record_dissent(c.bounty_id, 1, mine)
    event = w.ledger.events(receipt, "ScorerDissented")[0]
    assert (event["scorer"], event["round"], event["outcomeDigest"]) == (c.sponsor_scorer.address, 1, mine)
    c.finalize(c.aggregator, [c.sign(c.auditor), c.sign(c.sponsor_scorer, model=h("mine"))])
    assert w.ledger.round(c.bounty_id, 1).new_model_hash == h("m1")
    with reverts("NotScorer"):
        w.as_(w.outsider).record_dissent(c.bounty_id, 1, mine)

    db = tmp_path / "index.sqlite"
    sync_index(w.w3, w.deployment, db)
    traced = trace(db, c.bounty_id, w.ledger).rounds[0].to_dict()
    digest = str(Digest(w.ledger.outcome_digest(c.bounty_id, 1, h("m1"), c.participants, c.ordered)))
    assert [(a["scorer"], a["outcome_digest"]) for a in traced["attestations"]] == [
        (c.aggregator.address, digest), (c.auditor.address, digest)]
    assert [(a["scorer"], a["outcome_digest"]) for a in traced["dissents"]] == [
        (c.sponsor_scorer.address, str(Digest(mine)))]


def test_no_quorum_the_round_lapses_reward_carries_sponsor_refunded(joined):
    w = joined
    c = Committee(w, quorum=3, rounds=2)
    escrow = w.ledger.escrow_of(c.bounty_id)
    with reverts("RoundNotStalled", bountyId=c.bounty_id, round=1):
        w.as_(w.outsider).lapse_round(c.bounty_id)
    grace = w.ledger.bounty(c.bounty_id).recovery_grace
    w.advance(WINDOW + grace + 1)
    receipt = w.as_(w.outsider).lapse_round(c.bounty_id)  # anyone may close a stalled round
    assert w.ledger.events(receipt, "RoundLapsed")[0]["round"] == 1
    r = w.ledger.round(c.bounty_id, 1)
    assert r.finalized and r.new_model_hash == r.global_model_hash
    assert w.ledger.escrow_of(c.bounty_id) == escrow  # nothing credited: the whole reward carries
    with reverts("RoundClosed"):
        c.finalize(c.aggregator, [c.sign(c.auditor), c.sign(c.sponsor_scorer)])
    # Round 2 (the last) opens from the same model and lapses too: the bounty completes, the sponsor takes it all back.
    c.open_and_commit(2, model=h("m0"))
    w.advance(WINDOW + grace + 1)
    w.as_(w.outsider).lapse_round(c.bounty_id)
    assert w.ledger.bounty(c.bounty_id).status == BountyStatus.COMPLETED
    before = w.balance(w.sponsor)
    receipt = w.as_(w.sponsor).refund_remainder(c.bounty_id)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w.balance(w.sponsor) - before + fee == escrow == ONE_ETH


def test_committee_terms_are_checked_at_creation(joined):
    w = joined
    a, b = w.keyed("a", join=False).address, w.keyed("b", join=False).address
    for scorers, quorum, error in (((a,), 3, "InvalidQuorum"), ((a,), 0, "InvalidQuorum"), ((a, a), 2, "InvalidScorer"),
                                   ((w.aggregator,), 1, "InvalidScorer"), ((a, "0x" + "00" * 20), 1, "InvalidScorer"),
                                   (tuple([a] * 16), 1, "TooManyScorers")):
        with reverts(error):
            w.new_bounty(scorers=scorers, quorum=quorum)
    plain = w.new_bounty()
    assert w.ledger.committee_of(plain) == (1, 0)
    assert w.ledger.committee_of(w.new_bounty(scorers=(a, b), quorum=2)) == (2, 2)
