"""Institutions: join, leave after a cooldown, slashing by governance; reputation starts at 0.5."""

from tests.world import COOLDOWN, MIN_STAKE, h, reverts


def test_join_records_stake_and_initial_reputation(world):
    inst = world.insts[0]
    receipt = world.as_(inst).join("Cleveland", "ipfs://cleveland", stake=2 * MIN_STAKE)
    record = world.ledger.institution(inst)
    assert (record.stake, record.reputation, record.registered) == (2 * MIN_STAKE, 5_000, True)
    event = world.ledger.events(receipt, "InstitutionJoined")[0]
    assert (event["institution"], event["stake"], event["name"], event["metadataURI"]) == (
        inst, 2 * MIN_STAKE, "Cleveland", "ipfs://cleveland"
    )
    assert world.balance(world.ledger.address) == 2 * MIN_STAKE


def test_join_twice_reverts(joined):
    with reverts("AlreadyRegistered", institution=joined.insts[0]):
        joined.as_(joined.insts[0]).join("again", stake=MIN_STAKE)


def test_join_below_min_stake_reverts_and_changes_nothing(world):
    with reverts("StakeTooLow", sent=MIN_STAKE - 1, minimum=MIN_STAKE):
        world.as_(world.insts[0]).join("cheap", stake=MIN_STAKE - 1)
    assert world.ledger.institution(world.insts[0]).registered is False
    assert world.balance(world.ledger.address) == 0


def test_views(world):
    assert world.ledger.governance() == world.gov
    assert world.ledger.min_stake() == MIN_STAKE
    assert world.ledger.leave_cooldown() == COOLDOWN


def test_leave_then_withdraw_after_cooldown(joined):
    inst = joined.insts[0]
    me = joined.as_(inst)
    receipt = me.request_leave()
    available = joined.ledger.events(receipt, "LeaveRequested")[0]["availableAt"]
    with reverts("CooldownNotOver", institution=inst, availableAt=available):
        me.withdraw_stake()
    joined.advance(COOLDOWN + 1)
    before = joined.balance(joined.ledger.address)
    receipt = me.withdraw_stake()
    assert joined.ledger.events(receipt, "StakeWithdrawn")[0]["amount"] == MIN_STAKE
    assert joined.balance(joined.ledger.address) == before - MIN_STAKE
    assert joined.ledger.institution(inst).registered is False
    with reverts("NotRegistered", institution=inst):
        me.withdraw_stake()  # nothing is paid twice


def test_leave_reverts(world):
    me = world.as_(world.insts[0])
    with reverts("NotRegistered"):
        me.request_leave()
    me.join("x", stake=MIN_STAKE)
    with reverts("LeaveNotRequested"):
        me.withdraw_stake()
    me.request_leave()
    with reverts("LeaveAlreadyRequested"):
        me.request_leave()


def test_rejoining_keeps_reputation(joined):
    w = joined
    bounty = w.new_bounty(rounds=2)
    w.play_round(bounty, {w.insts[0]: -1, w.insts[1]: 10})  # insts[0] does harm: reputation falls
    fallen = w.ledger.institution(w.insts[0]).reputation
    assert fallen == 4_000
    me = w.as_(w.insts[0])
    me.request_leave()
    w.advance(COOLDOWN + 1)
    me.withdraw_stake()
    me.join("back again", stake=MIN_STAKE)
    assert w.ledger.institution(w.insts[0]).reputation == fallen


def test_slash_and_withdraw_slashed(joined):
    gov = joined.as_(joined.gov)
    inst = joined.insts[0]
    receipt = gov.slash(inst, MIN_STAKE // 4, h("evidence"))
    event = joined.ledger.events(receipt, "InstitutionSlashed")[0]
    assert (event["institution"], event["amount"], event["evidenceHash"]) == (inst, MIN_STAKE // 4, h("evidence"))
    assert joined.ledger.institution(inst).stake == MIN_STAKE - MIN_STAKE // 4
    assert joined.ledger.slashed_balance() == MIN_STAKE // 4
    before = joined.balance(joined.outsider)
    gov.withdraw_slashed(joined.outsider)
    assert joined.balance(joined.outsider) == before + MIN_STAKE // 4
    assert joined.ledger.slashed_balance() == 0
    with reverts("NothingToWithdraw"):
        gov.withdraw_slashed(joined.outsider)


def test_slash_reverts(joined):
    outsider = joined.as_(joined.outsider)
    with reverts("NotGovernance", caller=joined.outsider):
        outsider.slash(joined.insts[0], 1, h("e"))
    with reverts("NotGovernance", caller=joined.outsider):
        outsider.withdraw_slashed(joined.outsider)
    gov = joined.as_(joined.gov)
    with reverts("NotRegistered", institution=joined.outsider):
        gov.slash(joined.outsider, 1, h("e"))
    with reverts("SlashExceedsStake", amount=MIN_STAKE + 1, stake=MIN_STAKE):
        gov.slash(joined.insts[0], MIN_STAKE + 1, h("e"))
    assert joined.ledger.institution(joined.insts[0]).stake == MIN_STAKE
