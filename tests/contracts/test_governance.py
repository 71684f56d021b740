"""Governance changes hands in two steps (as OpenZeppelin's Ownable2Step): named by the governor, accepted by the successor."""

import pytest

from fedcore.errors import ContractRevert
from ledger.deployment import deploy
from tests.world import COOLDOWN, MIN_STAKE, h, reverts

ZERO = "0x" + "00" * 20


def test_deployment_announces_the_first_governor(world):
    assert world.ledger.governance() == world.gov
    assert world.ledger.pending_governance() == ZERO
    logs = world.ledger.contract.events.GovernanceTransferred().get_logs(from_block=0)
    assert [dict(e["args"]) for e in logs] == [{"previousGovernance": ZERO, "newGovernance": world.gov}]


def test_zero_governor_cannot_be_deployed(world):
    with pytest.raises(ContractRevert) as info:
        deploy(world.w3, "FedLedger", ZERO, MIN_STAKE, COOLDOWN, 10**17, sender=world.gov)
    assert info.value.name == "InvalidGovernance"


def test_handover_needs_the_successor_to_accept(joined):
    w, successor = joined, joined.outsider
    receipt = w.as_(w.gov).transfer_governance(successor)
    assert w.ledger.events(receipt, "GovernanceTransferStarted") == [
        {"previousGovernance": w.gov, "newGovernance": successor}
    ]
    # Until it accepts, the old governor keeps every power and the successor has none.
    assert (w.ledger.governance(), w.ledger.pending_governance()) == (w.gov, successor)
    with reverts("NotGovernance", caller=successor):
        w.as_(successor).slash(w.insts[0], 1, h("evidence"))
    w.as_(w.gov).slash(w.insts[0], 1, h("evidence"))

    receipt = w.as_(successor).accept_governance()
    assert w.ledger.events(receipt, "GovernanceTransferred") == [{"previousGovernance": w.gov, "newGovernance": successor}]
    assert (w.ledger.governance(), w.ledger.pending_governance()) == (successor, ZERO)
    with reverts("NotGovernance", caller=w.gov):
        w.as_(w.gov).slash(w.insts[0], 1, h("evidence"))
    w.as_(successor).slash(w.insts[0], 1, h("evidence"))
    assert w.ledger.institution(w.insts[0]).stake == MIN_STAKE - 2
    with reverts("NotPendingGovernance", caller=successor, pendingGovernance=ZERO):
        w.as_(successor).accept_governance()  # a handover completes once


def test_only_governance_names_a_successor(world):
    with reverts("NotGovernance", caller=world.outsider):
        world.as_(world.outsider).transfer_governance(world.outsider)
    assert world.ledger.pending_governance() == ZERO


def test_only_the_named_successor_accepts(world):
    named, other = world.insts[0], world.outsider
    with reverts("NotPendingGovernance", caller=other, pendingGovernance=ZERO):
        world.as_(other).accept_governance()
    world.as_(world.gov).transfer_governance(named)
    with reverts("NotPendingGovernance", caller=other, pendingGovernance=named):
        world.as_(other).accept_governance()
    with reverts("NotPendingGovernance", caller=world.gov, pendingGovernance=named):
        world.as_(world.gov).accept_governance()
    assert world.ledger.governance() == world.gov


def test_a_new_proposal_replaces_the_old_and_zero_withdraws_it(world):
    first, second = world.insts[0], world.insts[1]
    gov = world.as_(world.gov)
    gov.transfer_governance(first)
    gov.transfer_governance(second)
    with reverts("NotPendingGovernance", caller=first, pendingGovernance=second):
        world.as_(first).accept_governance()
    receipt = gov.transfer_governance(ZERO)
    assert world.ledger.events(receipt, "GovernanceTransferStarted")[0]["newGovernance"] == ZERO
    with reverts("NotPendingGovernance", caller=second, pendingGovernance=ZERO):
        world.as_(second).accept_governance()
    assert (world.ledger.governance(), world.ledger.pending_governance()) == (world.gov, ZERO)
