"""Rounds: open, commit inside the window once, finalize once for committed participants only."""

import pytest

from ledger.client import FedLedgerClient
from tests.world import MIN_STAKE, ONE_ETH, WINDOW, h, reverts
from ledger.client import BountyStatus


def test_open_round_announces_model_and_window(joined):
    w = joined
    bounty_id = w.new_bounty()
    agg = w.as_(w.aggregator)
    assert agg.open_round(bounty_id, h("m0")) == 1
    r = w.ledger.round(bounty_id, 1)
    assert (r.global_model_hash, r.finalized) == (h("m0"), False)
    assert r.commit_deadline == r.opened_at + WINDOW


def test_commit_declares_epsilon_within_the_bounty_budget(joined):
    """A DP bounty fixes its epsilon budget at creation; a commitment declaring more is refused and changes nothing;
    the declared epsilon travels in the commitment's event (no storage). A bounty without DP refuses any declaration."""
    from ledger.client import epsilon_units

    w = joined
    budget = epsilon_units(1.0)
    bounty_id = w.new_bounty(epsilon_budget=budget)
    created = w.ledger.bounty(bounty_id)
    assert created.epsilon_budget == budget == 1_000_000
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    with reverts("PrivacyBudgetExceeded", bountyId=bounty_id, institution=w.insts[0], declaredEpsilon=budget + 1,
                 epsilonBudget=budget):
        w.as_(w.insts[0]).commit_update(bounty_id, 1, h("u0"), 100, budget + 1)
    assert w.ledger.commitment_of(bounty_id, 1, w.insts[0]) == bytes(32)
    receipt = w.as_(w.insts[0]).commit_update(bounty_id, 1, h("u0"), 100, budget)  # exactly the budget: accepted
    assert w.ledger.events(receipt, "UpdateCommitted")[0]["epsilon"] == budget
    w.as_(w.insts[1]).commit_update(bounty_id, 1, h("u1"), 100, epsilon_units(0.25))
    commitments = w.ledger.commitments(bounty_id, 1)
    assert commitments[w.insts[0]].declared_epsilon == 1.0 and commitments[w.insts[1]].declared_epsilon == 0.25

    plain = w.new_bounty()
    assert w.ledger.bounty(plain).epsilon_budget == 0
    w.as_(w.aggregator).open_round(plain, h("m0"))
    with reverts("PrivacyBudgetExceeded", bountyId=plain, declaredEpsilon=1, epsilonBudget=0):
        w.as_(w.insts[0]).commit_update(plain, 1, h("p0"), 100, 1)
    receipt = w.as_(w.insts[0]).commit_update(plain, 1, h("p0"), 100)
    assert w.ledger.events(receipt, "UpdateCommitted")[0]["epsilon"] == 0
    assert w.ledger.commitments(plain, 1)[w.insts[0]].declared_epsilon is None


def test_open_round_reverts(joined):
    w = joined
    bounty_id = w.new_bounty(rounds=1, deadline_in=3_600)
    with reverts("NotAggregator", bountyId=bounty_id, caller=w.outsider):
        w.as_(w.outsider).open_round(bounty_id, h("m0"))
    agg = w.as_(w.aggregator)
    with reverts("ZeroHash"):
        agg.open_round(bounty_id, bytes(32))
    with reverts("UnknownBounty", bountyId=42):
        agg.open_round(42, h("m0"))
    agg.open_round(bounty_id, h("m0"))
    with reverts("PreviousRoundOpen", bountyId=bounty_id, round=1):
        agg.open_round(bounty_id, h("m1"))
    w.commit(bounty_id, 1, w.insts[:1])
    agg.finalize_round(bounty_id, 1, h("m1"), {w.insts[0]: 1})
    with reverts("BountyNotActive", status=int(BountyStatus.COMPLETED)):
        agg.open_round(bounty_id, h("m1"))

    two_rounds = w.new_bounty(rounds=2, deadline_in=3_600)
    agg.open_round(two_rounds, h("m0"))
    w.commit(two_rounds, 1, w.insts[:1])
    agg.finalize_round(two_rounds, 1, h("m1"), {w.insts[0]: 1})
    with reverts("ModelHashMismatch", bountyId=two_rounds, round=2, expected=h("m1"), given=h("other")):
        agg.open_round(two_rounds, h("other"))
    deadline = w.ledger.bounty(two_rounds).deadline
    w.advance(3_601)
    with reverts("DeadlinePassed", bountyId=two_rounds, deadline=deadline):
        agg.open_round(two_rounds, h("m1"))


def test_commit_records_hash_and_emits_sample_count(joined):
    w = joined
    bounty_id = w.new_bounty()
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    receipt = w.as_(w.insts[0]).commit_update(bounty_id, 1, h("u0"), 199)
    event = w.ledger.events(receipt, "UpdateCommitted")[0]
    assert (event["institution"], event["updateHash"], event["sampleCount"]) == (w.insts[0], h("u0"), 199)
    assert w.ledger.commitment_of(bounty_id, 1, w.insts[0]) == h("u0")
    assert w.ledger.commitment_of(bounty_id, 1, w.insts[1]) == bytes(32)


def test_commit_reverts(joined):
    w = joined
    bounty_id = w.new_bounty()
    me = w.as_(w.insts[0])
    with reverts("RoundNotOpen", bountyId=bounty_id, round=1):
        me.commit_update(bounty_id, 1, h("u"), 1)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    with reverts("NotRegistered", institution=w.outsider):
        w.as_(w.outsider).commit_update(bounty_id, 1, h("u"), 1)
    with reverts("ZeroHash"):
        me.commit_update(bounty_id, 1, bytes(32), 1)
    with reverts("ZeroSamples"):
        me.commit_update(bounty_id, 1, h("u"), 0)
    me.commit_update(bounty_id, 1, h("u"), 1)
    with reverts("AlreadyCommitted", bountyId=bounty_id, round=1, institution=w.insts[0]):
        me.commit_update(bounty_id, 1, h("other"), 1)
    assert w.ledger.commitment_of(bounty_id, 1, w.insts[0]) == h("u")
    with reverts("UnknownBounty"):
        me.commit_update(99, 1, h("u"), 1)


def test_late_commit_reverts(joined):
    w = joined
    bounty_id = w.new_bounty()
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    w.advance(WINDOW + 1)
    with reverts("RoundClosed", bountyId=bounty_id, round=1):
        w.as_(w.insts[0]).commit_update(bounty_id, 1, h("u"), 1)
    assert w.ledger.commitment_of(bounty_id, 1, w.insts[0]) == bytes(32)


def test_commit_after_finalize_reverts(joined):
    w = joined
    bounty_id = w.new_bounty()
    w.play_round(bounty_id, {w.insts[0]: 1})
    with reverts("RoundClosed", bountyId=bounty_id, round=1):
        w.as_(w.insts[1]).commit_update(bounty_id, 1, h("late"), 1)


def test_leaving_or_low_reputation_institutions_cannot_commit(joined):
    w = joined
    bounty_id = w.new_bounty(rounds=3, min_rep=4_500)
    w.as_(w.insts[1]).request_leave()
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    with reverts("NotRegistered", institution=w.insts[1]):
        w.as_(w.insts[1]).commit_update(bounty_id, 1, h("u"), 1)
    w.commit(bounty_id, 1, [w.insts[0], w.insts[2]])
    w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), {w.insts[0]: -1, w.insts[2]: 1})
    assert w.ledger.institution(w.insts[0]).reputation == 4_000
    w.as_(w.aggregator).open_round(bounty_id, h("m1"))
    with reverts("NotEligible", institution=w.insts[0], reputation=4_000, minReputation=4_500):
        w.as_(w.insts[0]).commit_update(bounty_id, 2, h("u2"), 1)


def test_an_institution_slashed_below_the_minimum_stake_cannot_commit(joined):
    w = joined
    bounty_id = w.new_bounty()
    w.as_(w.gov).slash(w.insts[0], MIN_STAKE, h("evidence"))  # to zero
    w.as_(w.gov).slash(w.insts[1], 1, h("evidence"))  # one wei below the minimum
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    with reverts("StakeBelowMinimum", institution=w.insts[0], stake=0, minimum=MIN_STAKE):
        w.as_(w.insts[0]).commit_update(bounty_id, 1, h("u0"), 1)
    with reverts("StakeBelowMinimum", institution=w.insts[1], stake=MIN_STAKE - 1, minimum=MIN_STAKE):
        w.as_(w.insts[1]).commit_update(bounty_id, 1, h("u1"), 1)
    assert w.ledger.commitment_of(bounty_id, 1, w.insts[0]) == bytes(32)
    w.commit(bounty_id, 1, [w.insts[2]])  # an institution with its full stake still commits


def test_a_zero_funded_bounty_moves_no_reputation(joined):
    """Reputation cannot be bought with a fake bounty: a round that pays nothing leaves every reputation alone."""
    w = joined
    bounty_id = w.new_bounty(funding=0, rounds=2)
    receipt_round = w.play_round(bounty_id, {w.insts[0]: 5, w.insts[1]: -1})
    assert receipt_round == 1
    assert [w.ledger.institution(x).reputation for x in w.insts[:2]] == [5_000, 5_000]


def test_a_round_below_the_reputation_floor_moves_reputation_in_proportion(joined):
    """alpha = 20% * min(reward, floor) / floor: half the floor moves reputation 10% of the way to its target."""
    w = joined
    floor = w.ledger.reputation_floor()
    assert floor == 10**17  # the deployment default
    bounty_id = w.new_bounty(funding=floor, rounds=2)  # each round pays floor / 2
    a, b = w.insts[:2]
    w.play_round(bounty_id, {a: 3, b: -2})
    assert [w.ledger.institution(x).reputation for x in (a, b)] == [5_500, 4_500]


def test_token_bounties_move_reputation_once_governance_sets_a_floor_for_the_token(joined):
    w = joined
    token = w.tokens["TestToken"].address
    assert w.ledger.reputation_floor(token) == 0
    bounty_id = w.new_bounty(funding=1_000, rounds=2, token=token)
    w.play_round(bounty_id, {w.insts[0]: 1})  # no floor for the token: nothing moves
    assert w.ledger.institution(w.insts[0]).reputation == 5_000
    with reverts("NotGovernance", caller=w.outsider):
        w.as_(w.outsider).set_reputation_floor(token, 500)
    receipt = w.as_(w.gov).set_reputation_floor(token, 500)
    assert w.ledger.events(receipt, "ReputationFloorSet") == [{"token": token, "floor": 500}]
    w.play_round(bounty_id, {w.insts[0]: 1})  # the last round pays 500: a full step
    assert w.ledger.institution(w.insts[0]).reputation == 6_000


def test_finalize_credits_positive_scores_and_updates_reputation(joined):
    w = joined
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=2)
    a, b, c, d = w.insts
    receipt_round = w.play_round(bounty_id, {a: 3, b: 1, c: 0, d: -2})
    assert receipt_round == 1
    reward = ONE_ETH // 2
    assert w.ledger.contribution_of(bounty_id, a) == (reward * 3 // 4, 3)
    assert w.ledger.contribution_of(bounty_id, b) == (reward // 4, 1)
    assert w.ledger.contribution_of(bounty_id, c) == (0, 0)
    assert w.ledger.contribution_of(bounty_id, d) == (0, 0)
    # rep' = rep + (target - rep) / 5 with target = 10_000 for a positive score, 0 for a negative one; a zero
    # score leaves it alone. b scored a third of a's and still rises as much: reputation measures reliability.
    reps = [w.ledger.institution(x).reputation for x in (a, b, c, d)]
    assert reps == [6_000, 6_000, 5_000, 4_000]
    r = w.ledger.round(bounty_id, 1)
    assert (r.finalized, r.new_model_hash) == (True, h(f"model-{bounty_id}-1"))
    bounty = w.ledger.bounty(bounty_id)
    assert (bounty.credited, bounty.rounds_finalized, bounty.total_positive_score) == (reward, 1, 4)


def test_dust_carries_forward_and_the_last_round_strands_nothing(joined):
    w = joined
    funding = 10**18 + 7  # not divisible: every split leaves dust
    bounty_id = w.new_bounty(funding=funding, rounds=3)
    a, b, c, _ = w.insts
    for _ in range(3):
        w.play_round(bounty_id, {a: 1, b: 1, c: 1})
        bounty = w.ledger.bounty(bounty_id)
        assert bounty.funded == bounty.credited + bounty.refunded + bounty.escrowed
    bounty = w.ledger.bounty(bounty_id)
    assert (bounty.status, bounty.escrowed, bounty.credited) == (BountyStatus.COMPLETED, 0, funding)
    total = sum(w.ledger.contribution_of(bounty_id, x)[0] for x in (a, b, c))
    assert total == funding


def test_a_round_without_positive_scores_carries_its_reward_forward(joined):
    w = joined
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=2)
    w.play_round(bounty_id, {w.insts[0]: 0})
    assert w.ledger.bounty(bounty_id).credited == 0
    w.play_round(bounty_id, {w.insts[0]: 2})
    assert w.ledger.contribution_of(bounty_id, w.insts[0])[0] == ONE_ETH


def test_a_round_that_pays_nobody_still_judges_harm(joined):
    """A carried round (no positive score) credits nobody, moves no reputation for a zero score, and still lowers
    the reputation of a negative score: harm is judged whether or not anyone is paid."""
    w = joined
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=3)  # every round's reward is above the floor: full steps
    a, b, c, _ = w.insts
    w.play_round(bounty_id, {a: 0, b: 0, c: 0})
    assert [w.ledger.institution(x).reputation for x in (a, b, c)] == [5_000] * 3
    w.play_round(bounty_id, {a: 0, b: -5, c: -1})
    assert [w.ledger.institution(x).reputation for x in (a, b, c)] == [5_000, 4_000, 4_000]
    assert w.ledger.bounty(bounty_id).credited == 0
    w.play_round(bounty_id, {a: 1, b: -5, c: 0})  # the last round pays the whole escrow to a, judges b again
    assert [w.ledger.institution(x).reputation for x in (a, b, c)] == [6_000, 3_200, 4_000]
    assert w.ledger.contribution_of(bounty_id, a)[0] == ONE_ETH


def test_a_reliable_small_contributor_keeps_a_high_reputation(joined):
    """Positive in every round, however small beside the best scorer: reputation rises towards 10_000 like the
    best scorer's; negative in every round: it falls towards 0."""
    w = joined
    rounds = 12
    bounty_id = w.new_bounty(funding=rounds * w.ledger.reputation_floor(), rounds=rounds)  # full steps
    big, small, harmful, _ = w.insts
    for _ in range(rounds):
        w.play_round(bounty_id, {big: 10**18, small: 10**12, harmful: -1})
    reps = {who: w.ledger.institution(who).reputation for who in (big, small, harmful)}
    assert reps[big] == reps[small] == 9_655  # a fifth of the way to 10_000, twelve times, floored
    assert reps[harmful] == 345


def test_finalize_reverts(joined):
    w = joined
    bounty_id = w.new_bounty(rounds=2)
    agg = w.as_(w.aggregator)
    a, b, c, _ = w.insts
    with reverts("RoundNotOpen", bountyId=bounty_id, round=1):
        agg.finalize_round(bounty_id, 1, h("m1"), {})
    agg.open_round(bounty_id, h("m0"))
    hashes = w.commit(bounty_id, 1, [a, b])
    with reverts("NotAggregator", caller=w.outsider):
        w.as_(w.outsider).finalize_round(bounty_id, 1, h("m1"), {a: 1})
    with reverts("ZeroHash"):
        agg.finalize_round(bounty_id, 1, bytes(32), {a: 1})
    with reverts("NotCommitted", bountyId=bounty_id, round=1, institution=c):
        agg.finalize_round(bounty_id, 1, h("m1"), {a: 1, c: 1})
    with reverts("LengthMismatch", participants=2, scores=1):
        agg._send("finalizeRound", bounty_id, 1, h("m1"), [a, b], [1])
    ordered = sorted([a, b], key=lambda x: hashes[x])
    with reverts("ParticipantsNotSorted", index=1):
        agg._send("finalizeRound", bounty_id, 1, h("m1"), ordered[::-1], [1, 1])
    with reverts("DuplicateUpdateHash", updateHash=hashes[a]):
        agg._send("finalizeRound", bounty_id, 1, h("m1"), [a, a], [1, 1])  # a participant listed twice
    with reverts("ScoreOutOfRange", institution=a, score=10**36 + 1):
        agg.finalize_round(bounty_id, 1, h("m1"), {a: 10**36 + 1})
    assert w.ledger.bounty(bounty_id).rounds_finalized == 0
    agg.finalize_round(bounty_id, 1, h("m1"), {a: 1, b: 1})
    with reverts("RoundClosed", bountyId=bounty_id, round=1):
        agg.finalize_round(bounty_id, 1, h("m1"), {a: 1})  # once per round
    assert w.ledger.bounty(bounty_id).rounds_finalized == 1


def test_a_copied_hash_is_refused_at_finalize(joined):
    w = joined
    bounty_id = w.new_bounty()
    agg = w.as_(w.aggregator)
    agg.open_round(bounty_id, h("m0"))
    a, copier = w.insts[:2]
    w.as_(a).commit_update(bounty_id, 1, h("original"), 10)
    w.as_(copier).commit_update(bounty_id, 1, h("original"), 10)  # copied from a's public commitment
    with reverts("DuplicateUpdateHash", bountyId=bounty_id, round=1, updateHash=h("original")):
        agg.finalize_round(bounty_id, 1, h("m1"), {a: 1, copier: 1})
    agg.finalize_round(bounty_id, 1, h("m1"), {a: 1})  # the aggregator drops the copy


def test_finalize_after_cancel_reverts(joined):
    w = joined
    bounty_id = w.new_bounty(rounds=2, deadline_in=3_600)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    w.commit(bounty_id, 1, w.insts[:1])
    w.advance(3_601)
    w.as_(w.sponsor).cancel_bounty(bounty_id)
    with reverts("BountyNotActive", status=int(BountyStatus.CANCELLED)):
        w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), {w.insts[0]: 1})


def test_a_commit_mined_just_after_the_window_reports_round_closed(rpc_chain):
    """The parent block is still inside the window, the mined block is not: the revert is replayed on the mined
    block, so the node hears RoundClosed rather than a bare failed transaction."""
    from ledger.chain import _rpc, connect
    from tests.world import World, deploy_fedledger

    w3 = connect(rpc_chain.url)
    accounts = w3.eth.accounts
    ledger = FedLedgerClient.from_deployment(w3, deploy_fedledger(w3, accounts[0], min_stake=10**16, cooldown=60))
    w = World(w3, ledger, accounts[0], accounts[1], accounts[2], accounts[3], list(accounts[4:8]))
    w.join_all()
    bounty_id = w.new_bounty(window=30)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    _rpc(w3, "evm_increaseTime", [31])  # no block mined: the latest block is still inside the window
    with reverts("RoundClosed", bountyId=bounty_id, round=1):
        w.as_(w.insts[0])._send("commitUpdate", bounty_id, 1, h("late"), 1, 0, gas=200_000)  # fixed gas: mined, fails
    assert w.ledger.commitment_of(bounty_id, 1, w.insts[0]) == bytes(32)
