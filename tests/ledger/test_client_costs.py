"""What the client spends per round: known gas limits instead of estimates, commitments it already holds instead of
``commitmentOf`` reads, and views read once per block on the embedded chain."""

import pytest
from web3 import Web3

from fedcore.commitments import sign_commitment
from ledger import chain as ledger_chain
from ledger.chain import connect
from ledger.client import GAS_HEADROOM, MEASURED_GAS, FedLedgerClient, SignedCommitment, gas_limit
from ledger.deployment import deploy_fedledger
from tests.world import MIN_STAKE, ONE_ETH, World, h, reverts


def _measured(function: str, participants: int = 0) -> int:
    fixed, per_participant = MEASURED_GAS[function]
    return fixed + per_participant * participants


def test_round_transactions_go_out_with_their_known_limits_and_fit_them(joined):
    """On every backend: open, commit and finalize are sent with the table's limit (no estimate), and use at most the
    measured worst case it was derived from (new participants, first round), so the headroom is real."""
    w = joined
    bounty_id = w.new_bounty()
    w3 = w.w3
    opened = w.as_(w.aggregator).open_round_tx(bounty_id, h("m0"))
    receipts = {"openRound": [w3.eth.get_transaction_receipt(opened.tx_hash)]}
    receipts["commitUpdate"] = [w.as_(inst).commit_update(bounty_id, 1, h(inst), 100) for inst in w.insts]
    scores = {inst: i + 1 for i, inst in enumerate(w.insts)}
    receipts["finalizeRound"] = [w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), scores)]
    participants = {"openRound": 0, "commitUpdate": 0, "finalizeRound": len(w.insts)}
    for function, sent in receipts.items():
        limit = gas_limit(function, participants[function])
        assert limit == int(_measured(function, participants[function]) * GAS_HEADROOM)
        for receipt in sent:
            assert receipt["status"] == 1
            assert w3.eth.get_transaction(receipt["transactionHash"])["gas"] == limit, function
            assert receipt["gasUsed"] <= _measured(function, participants[function]) * 1.02, (
                f"{function} used {receipt['gasUsed']}: update MEASURED_GAS from bench/gas.py"
            )


def test_a_batch_of_signed_commitments_goes_out_with_its_known_limit_and_fits_it(joined):
    """The aggregator's batch is sized by its entries (py-evm's estimate of it took seconds per round)."""
    w = joined
    bounty_id = w.new_bounty()
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    signers = [w.keyed(f"batch {i}") for i in range(3)]
    batch = [SignedCommitment(a.address, h(a.address), 100, sign_commitment(
        a, chain_id=w.w3.eth.chain_id, contract=w.ledger.address, bounty_id=bounty_id, round_=1,
        commitment=h(a.address), sample_count=100, declared_epsilon=0)) for a in signers]
    receipt = w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, batch)
    assert w.w3.eth.get_transaction(receipt["transactionHash"])["gas"] == gas_limit("commitUpdatesSigned", 3)
    assert receipt["gasUsed"] <= _measured("commitUpdatesSigned", 3) * 1.02


def test_a_function_without_a_known_limit_is_estimated():
    assert gas_limit("join") is None and gas_limit("createBounty") is None


def test_a_revert_under_a_known_limit_is_named_before_anything_is_mined(joined):
    """No estimate runs: the late commit raises the contract's error and leaves nothing behind, neither a block nor the
    sender's nonce or fee (JSON-RPC: simulated first; embedded: sent, named from its block, then undone), and the
    next transaction goes through."""
    w = joined
    bounty_id = w.new_bounty(window=60)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    w.advance(61)
    block, head = w.w3.eth.block_number, w.w3.eth.get_block("latest")["hash"]
    sender = w.insts[0]
    nonce, balance = w.w3.eth.get_transaction_count(sender), w.w3.eth.get_balance(sender)
    with reverts("RoundClosed", bountyId=bounty_id, round=1):
        w.as_(sender).commit_update(bounty_id, 1, h("late"), 100)
    assert (w.w3.eth.block_number, w.w3.eth.get_block("latest")["hash"]) == (block, head)
    assert (w.w3.eth.get_transaction_count(sender), w.w3.eth.get_balance(sender)) == (nonce, balance)
    assert w.ledger.commitment_of(bounty_id, 1, sender) == bytes(32)
    other = w.new_bounty()
    w.as_(w.aggregator).open_round(other, h("m0"))
    assert w.as_(sender).commit_update(other, 1, h("on time"), 100)["status"] == 1


def test_finalize_orders_participants_by_the_commitments_it_is_given(joined):
    """Given the round's commitments, finalize orders by them without reading the chain: handed the hashes in the
    wrong order, the contract refuses the list; handed the true ones, it finalizes."""
    w = joined
    bounty_id = w.new_bounty()
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    a, b = w.insts[:2]
    committed = w.commit(bounty_id, 1, [a, b])
    scores = {a: 3, b: 1}
    swapped = {a: committed[b], b: committed[a]}
    with reverts("ParticipantsNotSorted"):
        w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), scores, commitments=swapped)
    w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), scores, commitments={a: committed[a]})  # b: read
    assert w.ledger.round(bounty_id, 1).finalized


def _embedded_world() -> World:
    w3 = connect("embedded")
    accounts = w3.eth.accounts
    deployment = deploy_fedledger(w3, accounts[0], governance=accounts[0], min_stake=MIN_STAKE, leave_cooldown=60)
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    return World(w3, ledger, accounts[0], accounts[1], accounts[2], accounts[3], list(accounts[4:8]))


def test_embedded_views_are_read_once_per_block_and_never_stale(monkeypatch):
    """A view is answered from the block's reads until a new block; a snapshot reverted and replaced by another
    block of the same number is a new block too (the reads are keyed by block hash)."""
    w = _embedded_world()
    w3, ledger = w.w3, w.ledger
    bounty_id = w.new_bounty(funding=ONE_ETH)
    sponsor = ledger.as_sender(w.sponsor)
    tester = w3.provider.ethereum_tester
    calls = []
    original = ledger_chain._fast_view

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(ledger_chain, "_fast_view", counting)
    assert ledger.bounty(bounty_id).funded == ONE_ETH
    assert sponsor.bounty(bounty_id).funded == ONE_ETH  # an as_sender copy shares the block's reads
    assert len(calls) == 1
    snapshot = tester.take_snapshot()
    sponsor.fund_bounty(bounty_id, 5)
    assert ledger.bounty(bounty_id).funded == ONE_ETH + 5
    number = w3.eth.block_number
    tester.revert_to_snapshot(snapshot)
    sponsor.fund_bounty(bounty_id, 7)
    assert w3.eth.block_number == number
    assert ledger.bounty(bounty_id).funded == ONE_ETH + 7


def test_embedded_views_answer_as_eth_call_does():
    """The embedded chain's views run as one EVM message on a state kept per block (ledger.ledger_chain._fast_view): the
    same values as eth_call (structs, arrays, checksummed addresses), the block's latest state after each
    transaction, and a reverting view still raises the contract's error, through eth_call."""
    w = _embedded_world()
    w.join_all()
    bounty_id = w.new_bounty()
    fn = w.ledger.contract.functions
    caller = w.ledger._caller
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    for view in (fn.getBounty(bounty_id), fn.getRound(bounty_id, 1), fn.getInstitutionRecords(w.insts),
                 fn.commitmentOf(bounty_id, 1, w.insts[0]), fn.governance(), fn.minStake()):
        fast = ledger_chain._fast_view(view, caller)
        assert fast is not ledger_chain._NO_ANSWER
        assert fast == view.call({"from": caller})
    w.commit(bounty_id, 1, w.insts[:1])
    assert ledger_chain.call(fn.commitmentOf(bounty_id, 1, w.insts[0]), sender=caller) != bytes(32)  # not the last block's
    assert ledger_chain._fast_view(fn.getBounty(bounty_id + 100), caller) is ledger_chain._NO_ANSWER
    with reverts("UnknownBounty"):
        w.ledger.bounty(bounty_id + 100)



def test_institutions_are_read_in_one_view_as_one_at_a_time(joined):
    """The coordinator's eligibility read: ``getInstitutionRecords`` answers for many addresses what it answers for
    each alone, in the order asked, a leaving institution's request and a stranger's zero record included."""
    w = joined
    leaving = w.insts[1]
    w.as_(leaving).request_leave()
    stranger = Web3.to_checksum_address("0x" + "5a" * 20)
    asked = [w.insts[2], stranger, *w.insts]
    records = w.ledger.institutions(asked)
    assert records == [w.ledger.institution(a) for a in asked]
    assert records[1].registered is False and records[1].stake == 0
    assert records[asked.index(leaving, 2)].leave_requested_at > 0
    assert all(r.registered and r.stake == MIN_STAKE and r.address == a for r, a in zip(records[2:], w.insts))
    assert w.ledger.institutions([]) == []


def test_embedded_logs_are_eth_getLogs_read_from_receipts():
    """On the embedded chain, event look-ups read py-evm's receipts (ledger.chain.embedded_logs): the same logs,
    arguments, blocks, transactions and order as eth_getLogs, argument filters included."""
    w = _embedded_world()
    w.join_all()
    bounty_id = w.new_bounty()
    other = w.new_bounty()
    for b in (bounty_id, other):
        w.as_(w.aggregator).open_round(b, h("m0"))
        w.commit(b, 1)
    cases = [("InstitutionJoined", {}), ("UpdateCommitted", {"bountyId": bounty_id, "round": 1}),
             ("UpdateCommitted", {"institution": w.insts[1].lower()}), ("RoundOpened", {"bountyId": other})]
    for event, filters in cases:
        fast = w.ledger.logs(event, filters)
        slow = list(getattr(w.ledger.contract.events, event)().get_logs(from_block=0, argument_filters=filters))
        assert fast and [dict(log) for log in fast] == [dict(log) for log in slow], event
    assert w.ledger.logs("UpdateCommitted", from_block=w.w3.eth.block_number + 5) == []


def test_a_mined_revert_is_named_by_the_check_that_failed_at_its_own_block_time(joined):
    """A call that fails two checks, one on ``block.timestamp`` (``DeadlinePassed``, checked first) and one on state
    (``ModelHashMismatch``), is named by the first, as it failed when mined: replayed on the parent block, whose
    timestamp is before the deadline, the second one used to name it. (Embedded chain only: a JSON-RPC chain
    simulates the call on its pending block first and mines nothing, so the node's clock for that block decides.)"""
    w = joined
    if ledger_chain._embedded_tester(w.w3) is None:
        pytest.skip("only the embedded chain mines a reverting transaction under a known gas limit")
    bounty_id = w.new_bounty(window=60, deadline_in=3_600)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    w.advance(61)
    w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), {})
    deadline = w.ledger.bounty(bounty_id).deadline
    w.advance(deadline - w.now())
    assert w.now() <= deadline  # the parent block is not past the deadline; the next block is
    with reverts("DeadlinePassed", bountyId=bounty_id):
        w.as_(w.aggregator).open_round(bounty_id, h("not the previous model"))
