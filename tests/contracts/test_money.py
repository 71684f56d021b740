"""Claims, ERC-20 rewards (including hostile tokens), the revenue splitter, and a reentrancy attacker."""

from web3 import Web3

from ledger.client import FedLedgerClient
from ledger.compile import load_artifact
from ledger.deployment import deploy
from tests.world import MIN_STAKE, ONE_ETH, h, reverts, send


def test_claim_pays_once_in_eth(joined):
    w = joined
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=1)
    a = w.insts[0]
    w.play_round(bounty_id, {a: 1})
    before = w.balance(w.ledger.address)
    assert w.as_(a).claim(bounty_id) == ONE_ETH
    assert w.balance(w.ledger.address) == before - ONE_ETH
    assert w.ledger.contribution_of(bounty_id, a) == (0, 1)
    with reverts("NothingToClaim", bountyId=bounty_id, institution=a):
        w.as_(a).claim(bounty_id)
    with reverts("UnknownBounty", bountyId=5):
        w.as_(a).claim(5)


def test_token_bounty_funds_credits_and_claims_in_the_token(joined):
    w = joined
    token = w.tokens["TestToken"]
    bounty_id = w.new_bounty(funding=1_000, rounds=1, token=token.address)
    assert token.balance_of(w.ledger.address) == 1_000
    token.as_sender(w.outsider).mint(w.outsider, 500)
    token.as_sender(w.outsider).approve(w.ledger.address, 500)
    w.as_(w.outsider).fund_bounty(bounty_id, 500)
    w.play_round(bounty_id, {w.insts[0]: 2, w.insts[1]: 1})
    assert w.as_(w.insts[0]).claim(bounty_id) == 1_000
    assert w.as_(w.insts[1]).claim(bounty_id) == 500
    assert token.balance_of(w.insts[0]) == 1_000 and token.balance_of(w.ledger.address) == 0


def test_false_returning_token_is_caught(joined):
    w = joined
    token = w.tokens["FalseReturningToken"]
    token.as_sender(w.sponsor).mint(w.sponsor, 100)  # no approval: transferFrom returns false
    with reverts("SafeERC20FailedOperation", token=token.address):
        w.as_(w.sponsor).create_bounty(w.params(token=token.address), 100)
    assert w.ledger.bounty_count() == 0
    bounty_id = w.new_bounty(funding=100, rounds=1, token=token.address)
    w.play_round(bounty_id, {w.insts[0]: 1})
    token.as_sender(w.gov)._send("setFailing", True)
    with reverts("SafeERC20FailedOperation", token=token.address):
        w.as_(w.insts[0]).claim(bounty_id)
    assert w.ledger.contribution_of(bounty_id, w.insts[0])[0] == 100  # still owed, nothing lost
    token.as_sender(w.gov)._send("setFailing", False)
    assert w.as_(w.insts[0]).claim(bounty_id) == 100


def test_fee_on_transfer_token_is_rejected(joined):
    w = joined
    token = w.tokens["FeeOnTransferToken"]
    token.as_sender(w.sponsor).mint(w.sponsor, 1_000)
    token.as_sender(w.sponsor).approve(w.ledger.address, 1_000)
    with reverts("TokenAmountMismatch", token=token.address, expected=1_000, received=990):
        w.as_(w.sponsor).create_bounty(w.params(token=token.address), 1_000)
    assert token.balance_of(w.ledger.address) == 0


def _completed_bounty(w, scores):
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=1)
    w.play_round(bounty_id, scores)
    return bounty_id


def test_revenue_is_shared_by_cumulative_positive_score(joined):
    w = joined
    a, b, c, _ = w.insts
    bounty_id = _completed_bounty(w, {a: 3, b: 1, c: -1})
    assert w.ledger.final_scores(bounty_id, a) == (3, 4) and w.ledger.final_scores(bounty_id, c) == (0, 4)
    ledger_balance = w.balance(w.ledger.address)
    payer = w.revenue_as(w.outsider)
    receipt = payer.pay_revenue(bounty_id, 1_000)
    # Revenue and escrow never share a balance: the splitter holds the revenue, the ledger's balance is untouched.
    assert (w.balance(w.splitter.address), w.balance(w.ledger.address)) == (1_000, ledger_balance)
    assert w.splitter.events(receipt, "RevenuePaid")[0]["amount"] == 1_000
    assert w.splitter.revenue_due(bounty_id, a) == 750
    assert w.revenue_as(a).claim_revenue(bounty_id) == 750
    payer.pay_revenue(bounty_id, 1_001)  # dust of this payment waits for the next one
    assert w.revenue_as(a).claim_revenue(bounty_id) == 750  # floor(2001 * 3/4) - 750
    assert w.revenue_as(b).claim_revenue(bounty_id) == 500  # floor(2001 / 4)
    with reverts("NothingDue", bountyId=bounty_id, institution=c):
        w.revenue_as(c).claim_revenue(bounty_id)
    with reverts("NothingDue"):
        w.revenue_as(b).claim_revenue(bounty_id)
    assert w.splitter.revenue_total(bounty_id) == 2_001
    assert w.splitter.revenue_released(bounty_id) == 2_000  # 1 wei of dust, visible, claimable later


def test_revenue_in_a_token(joined):
    w = joined
    a, b = w.insts[:2]
    bounty_id = _completed_bounty(w, {a: 1, b: 1})
    token = w.tokens["TestToken"]
    token.as_sender(w.outsider).mint(w.outsider, 100)
    token.as_sender(w.outsider).approve(w.splitter.address, 100)
    w.revenue_as(w.outsider).pay_revenue(bounty_id, 100, token=token.address)
    assert w.revenue_as(b).claim_revenue(bounty_id, token=token.address) == 50
    assert token.balance_of(b) == 50
    assert token.balance_of(w.splitter.address) == 50 and token.balance_of(w.ledger.address) == 0


def test_revenue_reverts(joined):
    w = joined
    a = w.insts[0]
    with reverts("UnknownBounty", bountyId=99):
        w.revenue_as(w.outsider).pay_revenue(99, 1)
    active = w.new_bounty(rounds=2)
    with reverts("BountyNotCompleted", bountyId=active):
        w.ledger.final_scores(active, a)
    with reverts("BountyNotCompleted", bountyId=active):
        w.revenue_as(w.outsider).pay_revenue(active, 1)
    nobody = _completed_bounty(w, {a: 0})
    with reverts("NoContributors", bountyId=nobody):
        w.revenue_as(w.outsider).pay_revenue(nobody, 1)
    assert w.splitter.revenue_due(nobody, a) == 0 and w.splitter.revenue_due(active, a) == 0
    done = _completed_bounty(w, {a: 1})
    with reverts("ZeroAmount"):
        w.revenue_as(w.outsider).pay_revenue(done, 0)
    with reverts("WrongValue", sent=0, expected=5):
        w.revenue_as(w.outsider)._send("payRevenue", done, "0x" + "00" * 20, 5, value=0)


def _attacker(w):
    address, _ = deploy(w.w3, "ReentrantClaimer", w.ledger.address, w.splitter.address, sender=w.gov,
                        artifact=load_artifact("ReentrantClaimer"))
    attacker = w.w3.eth.contract(address=address, abi=load_artifact("ReentrantClaimer")["abi"])
    send(w, attacker.functions.join(), w.gov, value=MIN_STAKE)
    return attacker


def test_reentrant_claim_is_blocked_and_paid_once(joined):
    w = joined
    attacker = _attacker(w)
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=1)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    send(w, attacker.functions.commit(bounty_id, 1, h("attack")), w.gov)
    w.commit(bounty_id, 1, w.insts[:1])
    w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), {attacker.address: 1, w.insts[0]: 1})
    ledger_before = w.balance(w.ledger.address)
    send(w, attacker.functions.attackClaim(bounty_id), w.gov)
    assert attacker.functions.reentryAttempts().call() == 1
    assert attacker.functions.reentrySucceeded().call() == 0
    assert w.balance(attacker.address) == ONE_ETH // 2
    assert w.balance(w.ledger.address) == ledger_before - ONE_ETH // 2
    assert w.ledger.contribution_of(bounty_id, attacker.address)[0] == 0

    w.revenue_as(w.outsider).pay_revenue(bounty_id, 1_000)
    send(w, attacker.functions.attackClaimRevenue(bounty_id), w.gov)
    assert attacker.functions.reentrySucceeded().call() == 0
    assert w.balance(attacker.address) == ONE_ETH // 2 + 500


def test_an_institution_that_rejects_ether_keeps_its_credit(joined):
    w = joined
    attacker = _attacker(w)
    bounty_id = w.new_bounty(funding=ONE_ETH, rounds=1)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    send(w, attacker.functions.commit(bounty_id, 1, h("u")), w.gov)
    w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), {attacker.address: 1})
    send(w, attacker.functions.setRejectPayments(True), w.gov)
    with reverts("TransferFailed", to=attacker.address, amount=ONE_ETH):
        send(w, attacker.functions.plainClaim(bounty_id), w.gov)
    assert w.ledger.contribution_of(bounty_id, attacker.address)[0] == ONE_ETH


def test_client_refuses_an_address_without_code(chain):
    import pytest

    from fedcore.errors import ChainError

    with pytest.raises(ChainError, match="no contract"):
        FedLedgerClient(chain, Web3.to_checksum_address("0x" + "11" * 20))
