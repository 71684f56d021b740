"""Bounties: creation and its parameter checks, funding by anyone, cancellation and refunds by the sponsor only."""

from dataclasses import replace

import pytest

from ledger.client import ETH, BountyStatus
from tests.world import ONE_ETH, h, reverts


def test_create_bounty_fixes_the_rules_hash(world):
    params = replace(world.params(), rules_hash=h("rules"))
    receipt = world.as_(world.sponsor)._send("createBounty", params.as_tuple(), 0)
    (created,) = world.ledger.events(receipt, "BountyCreated")
    assert created["rulesHash"] == h("rules")
    assert world.ledger.bounty(created["bountyId"]).rules_hash == h("rules")


def test_create_bounty_records_params_and_escrows_funding(world):
    params = world.params(rounds=3, min_rep=4_000)
    before = world.balance(world.ledger.address)
    bounty_id = world.as_(world.sponsor).create_bounty(params, ONE_ETH)
    b = world.ledger.bounty(bounty_id)
    assert bounty_id == 1 and world.ledger.bounty_count() == 1
    assert (b.sponsor, b.aggregator, b.num_rounds, b.min_reputation, b.status) == (
        world.sponsor, world.aggregator, 3, 4_000, BountyStatus.ACTIVE
    )
    assert (b.task_spec_hash, b.validation_set_hash, b.deadline) == (h("task"), h("validation"), params.deadline)
    assert b.recovery_grace == params.recovery_grace == 3_600
    assert (b.funded, b.credited, b.refunded, b.escrowed) == (ONE_ETH, 0, 0, ONE_ETH)
    assert world.ledger.escrow_of(bounty_id) == ONE_ETH
    assert world.balance(world.ledger.address) == before + ONE_ETH


@pytest.mark.parametrize(
    "change, error, args",
    [
        ({"aggregator": "0x" + "00" * 20}, "ZeroAggregator", {}),
        ({"num_rounds": 0}, "ZeroRounds", {}),
        ({"commit_window": 0}, "ZeroCommitWindow", {}),
        ({"deadline": 1}, "DeadlineNotInFuture", {"deadline": 1}),
        ({"min_reputation": 10_001}, "MinReputationTooHigh", {"minReputation": 10_001, "maximum": 10_000}),
        ({"task_spec_hash": bytes(32)}, "ZeroSpecHash", {}),
        ({"validation_set_hash": bytes(32)}, "ZeroSpecHash", {}),
        ({"rules_hash": bytes(32)}, "ZeroRulesHash", {}),
        ({"recovery_grace": 0}, "ZeroRecoveryGrace", {}),
    ],
)
def test_create_bounty_rejects_bad_params(world, change, error, args):
    with reverts(error, **args):
        world.as_(world.sponsor).create_bounty(replace(world.params(), **change), ONE_ETH)
    assert world.ledger.bounty_count() == 0


def test_wrong_value_reverts(world):
    sponsor = world.as_(world.sponsor)
    with reverts("WrongValue", sent=5, expected=ONE_ETH):
        sponsor._send("createBounty", world.params().as_tuple(), ONE_ETH, value=5)
    token = world.tokens["TestToken"].address
    with reverts("WrongValue", sent=5, expected=0):
        sponsor._send("createBounty", world.params(token=token).as_tuple(), 0, value=5)
    bounty_id = world.new_bounty()
    with reverts("WrongValue", sent=0, expected=10):
        sponsor._send("fundBounty", bounty_id, 10, value=0)


def test_anyone_tops_up(world):
    bounty_id = world.new_bounty(funding=ONE_ETH)
    receipt = world.as_(world.outsider).fund_bounty(bounty_id, 3 * ONE_ETH)
    assert world.ledger.events(receipt, "BountyFunded")[0]["funder"] == world.outsider
    assert world.ledger.bounty(bounty_id).funded == 4 * ONE_ETH


def test_fund_reverts(world):
    with reverts("UnknownBounty", bountyId=7):
        world.as_(world.outsider)._send("fundBounty", 7, 1, value=1)
    bounty_id = world.new_bounty()
    with reverts("ZeroAmount"):
        world.as_(world.outsider).fund_bounty(bounty_id, 0)
    world.as_(world.sponsor).cancel_bounty(bounty_id)
    with reverts("BountyNotActive", bountyId=bounty_id, status=int(BountyStatus.CANCELLED)):
        world.as_(world.outsider).fund_bounty(bounty_id, 1)


def test_cancel_before_first_round_refunds_everything(world):
    bounty_id = world.new_bounty(funding=2 * ONE_ETH)
    before = world.balance(world.ledger.address)
    receipt = world.as_(world.sponsor).cancel_bounty(bounty_id)
    assert world.ledger.events(receipt, "BountyCancelled")[0]["refunded"] == 2 * ONE_ETH
    b = world.ledger.bounty(bounty_id)
    assert (b.status, b.refunded, b.escrowed) == (BountyStatus.CANCELLED, 2 * ONE_ETH, 0)
    assert world.balance(world.ledger.address) == before - 2 * ONE_ETH
    with reverts("BountyNotActive"):
        world.as_(world.sponsor).cancel_bounty(bounty_id)  # refunded once only


def test_cancel_reverts_for_others_and_mid_bounty(joined):
    w = joined
    bounty_id = w.new_bounty(rounds=3)
    with reverts("NotSponsor", bountyId=bounty_id, caller=w.outsider):
        w.as_(w.outsider).cancel_bounty(bounty_id)
    w.play_round(bounty_id, {w.insts[0]: 1})
    deadline = w.ledger.bounty(bounty_id).deadline
    with reverts("CancelNotAllowed", bountyId=bounty_id, deadline=deadline):
        w.as_(w.sponsor).cancel_bounty(bounty_id)
    with reverts("UnknownBounty", bountyId=99):
        w.as_(w.sponsor).cancel_bounty(99)


def test_cancel_after_deadline_keeps_credits_claimable(joined):
    w = joined
    bounty_id = w.new_bounty(funding=3 * ONE_ETH, rounds=3, deadline_in=3_600)
    w.play_round(bounty_id, {w.insts[0]: 1, w.insts[1]: 1})  # credits 1 ETH
    w.advance(3_601)
    w.as_(w.sponsor).cancel_bounty(bounty_id)
    b = w.ledger.bounty(bounty_id)
    assert (b.credited, b.refunded, b.escrowed) == (ONE_ETH, 2 * ONE_ETH, 0)
    assert w.as_(w.insts[0]).claim(bounty_id) == ONE_ETH // 2


def test_sponsor_recovers_a_stalled_round_once_its_window_and_grace_have_passed(joined):
    """The recovery rule: a round still not finalized ``recoveryGrace`` seconds after its commit window frees the
    escrow (refunded to the sponsor); what earlier rounds credited stays claimable, and the stalled round can no
    longer be finalized."""
    w = joined
    grace = 3_600
    bounty_id = w.as_(w.sponsor).create_bounty(replace(w.params(rounds=2), recovery_grace=grace), 2 * ONE_ETH)
    w.play_round(bounty_id, {w.insts[0]: 1})  # credits 1 ETH
    w.as_(w.aggregator).open_round(bounty_id, w.ledger.round(bounty_id, 1).new_model_hash)
    w.commit(bounty_id, 2, [w.insts[1]])
    commit_deadline = w.ledger.round(bounty_id, 2).commit_deadline
    deadline = w.ledger.bounty(bounty_id).deadline
    w.advance(commit_deadline + grace - 60 - w.now())  # the aggregator may still be scoring: too early
    with reverts("CancelNotAllowed", bountyId=bounty_id, deadline=deadline):
        w.as_(w.sponsor).cancel_bounty(bounty_id)
    with reverts("NotSponsor", bountyId=bounty_id, caller=w.outsider):
        w.as_(w.outsider).cancel_bounty(bounty_id)
    w.advance(120)
    assert w.now() < deadline
    receipt = w.as_(w.sponsor).cancel_bounty(bounty_id)
    assert w.ledger.events(receipt, "BountyCancelled")[0]["refunded"] == ONE_ETH
    b = w.ledger.bounty(bounty_id)
    assert (b.status, b.credited, b.refunded, b.escrowed) == (BountyStatus.CANCELLED, ONE_ETH, ONE_ETH, 0)
    with reverts("BountyNotActive"):
        w.as_(w.aggregator).finalize_round(bounty_id, 2, h("late model"), {w.insts[1]: 1})
    assert w.as_(w.insts[0]).claim(bounty_id) == ONE_ETH


def test_a_finalized_round_is_not_stalled(joined):
    """Between rounds (the last one finalized, the next not yet opened) the recovery rule does not apply."""
    w = joined
    bounty_id = w.as_(w.sponsor).create_bounty(replace(w.params(rounds=2), recovery_grace=1), ONE_ETH)
    w.play_round(bounty_id, {w.insts[0]: 1})
    w.advance(2 * w.params().commit_window)
    with reverts("CancelNotAllowed"):
        w.as_(w.sponsor).cancel_bounty(bounty_id)


def test_refund_remainder_after_a_last_round_with_no_positive_score(joined):
    w = joined
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=2)
    with reverts("BountyNotCompleted", bountyId=bounty_id, status=int(BountyStatus.ACTIVE)):
        w.as_(w.sponsor).refund_remainder(bounty_id)
    w.play_round(bounty_id, {w.insts[0]: 5})
    w.play_round(bounty_id, {w.insts[0]: 0, w.insts[1]: -3})
    b = w.ledger.bounty(bounty_id)
    assert (b.status, b.credited, b.escrowed) == (BountyStatus.COMPLETED, ONE_ETH // 2, ONE_ETH // 2)
    with reverts("NotSponsor"):
        w.as_(w.outsider).refund_remainder(bounty_id)
    receipt = w.as_(w.sponsor).refund_remainder(bounty_id)
    assert w.ledger.events(receipt, "RemainderRefunded")[0]["amount"] == ONE_ETH // 2
    with reverts("NothingToRefund", bountyId=bounty_id):
        w.as_(w.sponsor).refund_remainder(bounty_id)
    b = w.ledger.bounty(bounty_id)
    assert b.funded == b.credited + b.refunded + b.escrowed


def test_eth_address_constant_is_zero():
    assert int(ETH, 16) == 0
