"""The ledger client's event queries: a round's commitments, the transaction that opened or finalized it, who joined."""

from fedcore.types import Digest
from ledger.example import scripted_bounty
from tests.world import h


def test_commitments_event_tx_and_joined_institutions(joined):
    w = joined
    start = w.w3.eth.block_number
    bounty_id = scripted_bounty(w.ledger, sponsor=w.sponsor, aggregator=w.aggregator, funder=w.outsider,
                                institutions=w.insts)
    other = w.new_bounty()  # its round 1 must not show up in this bounty's look-ups

    commitments = w.ledger.commitments(bounty_id, 1)
    assert set(commitments) == {w.insts[0], w.insts[1]}
    first = commitments[w.insts[0]]
    assert first.update_hash == Digest(h(f"bounty {bounty_id} round 1 update 0"))
    assert first.update_hash == w.ledger.commitment_of(bounty_id, 1, w.insts[0])
    assert first.sample_count == 100 and first.block_number > start
    assert w.w3.eth.get_transaction_receipt(first.tx_hash)["blockNumber"] == first.block_number
    assert w.ledger.commitments(bounty_id, 1, from_block=first.block_number + 1).keys() <= {w.insts[1]}
    assert w.ledger.commitments(bounty_id, 3) == {}

    opened = w.ledger.event_tx("RoundOpened", bounty_id, 2)
    finalized = w.ledger.event_tx("RoundFinalized", bounty_id, 2)
    assert opened.round == finalized.round == 2 and opened.block_number < finalized.block_number
    assert str(w.w3.eth.get_transaction(opened.tx_hash)["to"]) == w.ledger.address
    assert w.ledger.event_tx("RoundFinalized", other, 2) is None
    assert w.ledger.event_tx("RoundOpened", bounty_id, 2, from_block=finalized.block_number + 1) is None

    tx = w.as_(w.aggregator).open_round_tx(other, Digest.of(b"next model"))
    assert (tx.round, tx.block_number) == (1, w.w3.eth.block_number)
    assert w.ledger.event_tx("RoundOpened", other, 1) == tx

    assert w.ledger.joined_institutions(from_block=0, to_block=w.w3.eth.block_number) == set(w.insts)
    assert w.ledger.joined_institutions(from_block=start + 1, to_block=w.w3.eth.block_number) == set()
