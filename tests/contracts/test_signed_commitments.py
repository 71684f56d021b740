"""Signed commitments posted in a batch: the same rules as a commit of one's own, no replay, no forgery."""

from dataclasses import replace
from pathlib import Path

from web3 import Web3

from fedcore.commitments import commitment_type, recover_commitment_signer, sign_commitment
from ledger.client import SignedCommitment, epsilon_units
from tests.world import WINDOW, h, reverts


def _signed(w, account, bounty_id, round_, commitment, samples=100, epsilon=0, *, chain_id=None, contract=None):
    signature = sign_commitment(account, chain_id=chain_id or w.w3.eth.chain_id, contract=contract or w.ledger.address,
                                bounty_id=bounty_id, round_=round_, commitment=commitment, sample_count=samples,
                                declared_epsilon=epsilon)
    return SignedCommitment(account.address, commitment, samples, signature, epsilon)


def _open(w, **kwargs):
    bounty_id = w.new_bounty(**kwargs)
    w.as_(w.aggregator).open_round(bounty_id, h("m0"))
    return bounty_id


def test_batch_records_every_signed_commitment_and_counts_with_self_commits(joined):
    w = joined
    signers = [w.keyed(f"signer {i}") for i in range(3)]
    bounty_id = _open(w)
    batch = [_signed(w, a, bounty_id, 1, h(f"u{i}"), 10 + i) for i, a in enumerate(signers)]
    receipt = w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, batch)
    events = w.ledger.events(receipt, "UpdateCommitted")
    assert [(e["institution"], e["updateHash"], e["sampleCount"]) for e in events] == [
        (a.address, h(f"u{i}"), 10 + i) for i, a in enumerate(signers)]
    w.as_(w.insts[0]).commit_update(bounty_id, 1, h("self"), 5)  # the censorship path: commit on chain oneself
    assert {a: w.ledger.commitment_of(bounty_id, 1, a) for a in [s.address for s in signers] + [w.insts[0]]} == {
        **{a.address: h(f"u{i}") for i, a in enumerate(signers)}, w.insts[0]: h("self")}
    scores = {signers[0].address: 3, signers[1].address: 1, w.insts[0]: 1}
    w.as_(w.aggregator).finalize_round(bounty_id, 1, h("m1"), scores)
    credited = {a: w.ledger.contribution_of(bounty_id, a)[0] for a in scores}
    assert credited[signers[0].address] == 3 * credited[w.insts[0]] > 0
    assert credited[signers[1].address] == credited[w.insts[0]]


def test_one_commitment_per_institution_and_round_either_way(joined):
    w = joined
    signer = w.keyed("signer")
    bounty_id = _open(w)
    w.as_(signer).commit_update(bounty_id, 1, h("own"), 7)
    receipt = w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [_signed(w, signer, bounty_id, 1, h("batched"))])
    assert w.ledger.events(receipt, "UpdateCommitted") == []  # skipped: its own commit stands
    assert w.ledger.commitment_of(bounty_id, 1, signer.address) == h("own")

    other = w.keyed("other")
    w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [_signed(w, other, bounty_id, 1, h("first"))])
    with reverts("AlreadyCommitted", bountyId=bounty_id, round=1, institution=other.address):
        w.as_(other).commit_update(bounty_id, 1, h("second"), 1)
    receipt = w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [_signed(w, other, bounty_id, 1, h("again"))])
    assert w.ledger.events(receipt, "UpdateCommitted") == []
    assert w.ledger.commitment_of(bounty_id, 1, other.address) == h("first")


def test_signed_commitment_cannot_be_replayed_to_another_round_bounty_contract_or_chain(joined):
    w = joined
    signer = w.keyed("signer")
    first = _open(w, rounds=2)
    second = _open(w)
    good = _signed(w, signer, first, 1, h("u"))
    for bounty_id, round_ in ((second, 1), (first, 2)):
        if round_ == 2:  # finalize round 1 so round 2 opens
            w.as_(w.aggregator).commit_updates_signed(first, 1, [good])
            w.as_(w.aggregator).finalize_round(first, 1, h("m1"), {signer.address: 1})
            w.as_(w.aggregator).open_round(first, h("m1"))
        with reverts("BadCommitmentSignature", bountyId=bounty_id, round=round_, institution=signer.address):
            w.as_(w.aggregator).commit_updates_signed(bounty_id, round_, [good])
    other_contract = _signed(w, signer, first, 2, h("u2"), contract=Web3.to_checksum_address("0x" + "11" * 20))
    other_chain = _signed(w, signer, first, 2, h("u2"), chain_id=w.w3.eth.chain_id + 1)
    for bad in (other_contract, other_chain):
        with reverts("BadCommitmentSignature", institution=signer.address):
            w.as_(w.aggregator).commit_updates_signed(first, 2, [bad])
    # Nor for other numbers than those signed.
    tampered = SignedCommitment(good.institution, good.commitment, good.sample_count + 1, good.signature)
    with reverts("BadCommitmentSignature"):
        w.as_(w.aggregator).commit_updates_signed(second, 1, [tampered])


def test_forged_or_non_member_signature_is_refused_and_the_window_applies(joined):
    w = joined
    signer, forger = w.keyed("signer"), w.keyed("forger")
    outsider = w.keyed("outsider", join=False)
    bounty_id = _open(w)
    forged = _signed(w, forger, bounty_id, 1, h("u"))
    forged = SignedCommitment(signer.address, forged.commitment, forged.sample_count, forged.signature)
    with reverts("BadCommitmentSignature", institution=signer.address):
        w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [forged])
    with reverts("NotRegistered", institution=outsider.address):
        w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [_signed(w, outsider, bounty_id, 1, h("o"))])
    with reverts("ZeroSamples"):
        w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [_signed(w, signer, bounty_id, 1, h("u"), 0)])
    assert w.ledger.commitment_of(bounty_id, 1, signer.address) == bytes(32)
    late = _signed(w, signer, bounty_id, 1, h("u"))
    w.advance(WINDOW + 1)
    with reverts("RoundClosed", bountyId=bounty_id, round=1):
        w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [late])


def test_python_recovers_the_signer_the_contract_recovers(world):
    signer = world.keyed("signer", join=False)
    args = dict(chain_id=world.w3.eth.chain_id, contract=world.ledger.address, bounty_id=3, round_=2,
                commitment=h("c"), sample_count=9, declared_epsilon=0)
    signature = sign_commitment(signer, **args)
    assert recover_commitment_signer(signature, **args) == signer.address
    assert recover_commitment_signer(signature, **{**args, "round_": 3}) != signer.address
    assert recover_commitment_signer(signature, **{**args, "declared_epsilon": 1}) != signer.address


def test_the_contract_hashes_the_type_python_signs():
    source = (Path(__file__).parents[2] / "contracts" / "RoundLedger.sol").read_text()
    assert f'"{commitment_type()}"' in source
    assert commitment_type().endswith("uint64 sampleCount,uint64 declaredEpsilon)")


def test_a_batch_on_a_dp_bounty_declares_epsilon_within_the_budget(joined):
    """The signed struct carries the declared cumulative epsilon: the batch records it in the event, exactly the
    budget is accepted, and a batch with one entry over budget reverts whole (as any refused entry does)."""
    w = joined
    budget = epsilon_units(1.0)
    bounty_id = _open(w, epsilon_budget=budget)
    within = [w.keyed("within"), w.keyed("at budget")]
    batch = [_signed(w, within[0], bounty_id, 1, h("a"), epsilon=epsilon_units(0.25)),
             _signed(w, within[1], bounty_id, 1, h("b"), epsilon=budget)]
    over_signer = w.keyed("over")
    over = _signed(w, over_signer, bounty_id, 1, h("c"), epsilon=budget + 1)
    with reverts("PrivacyBudgetExceeded", bountyId=bounty_id, institution=over_signer.address,
                 declaredEpsilon=budget + 1, epsilonBudget=budget):
        w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [*batch, over])
    assert all(w.ledger.commitment_of(bounty_id, 1, a.address) == bytes(32) for a in [*within, over_signer])
    receipt = w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, batch)  # retried without it
    assert [(e["institution"], e["epsilon"]) for e in w.ledger.events(receipt, "UpdateCommitted")] == [
        (within[0].address, 250_000), (within[1].address, budget)]
    commitments = w.ledger.commitments(bounty_id, 1)
    assert [commitments[a.address].declared_epsilon for a in within] == [0.25, 1.0]


def test_a_batch_cannot_change_the_signed_epsilon(joined):
    """Lowering (or raising) the epsilon an institution signed breaks the signature, so the poster cannot hide a
    spend over budget nor inflate one; a bounty without DP refuses any declaration, signed or not."""
    w = joined
    signer = w.keyed("signer")
    bounty_id = _open(w, epsilon_budget=epsilon_units(1.0))
    honest = _signed(w, signer, bounty_id, 1, h("u"), epsilon=epsilon_units(2.0))
    for tampered in (replace(honest, declared_epsilon=epsilon_units(0.5)), replace(honest, declared_epsilon=0)):
        with reverts("BadCommitmentSignature", bountyId=bounty_id, round=1, institution=signer.address):
            w.as_(w.aggregator).commit_updates_signed(bounty_id, 1, [tampered])
    assert w.ledger.commitment_of(bounty_id, 1, signer.address) == bytes(32)
    plain = _open(w)
    with reverts("PrivacyBudgetExceeded", bountyId=plain, institution=signer.address, declaredEpsilon=1,
                 epsilonBudget=0):
        w.as_(w.aggregator).commit_updates_signed(plain, 1, [_signed(w, signer, plain, 1, h("p"), epsilon=1)])
