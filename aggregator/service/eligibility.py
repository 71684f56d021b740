"""Who may commit in a round: the contract's commit rule (``RoundLedger._commit``), mirrored in one place.

The contract refuses a commitment, in this order, from an institution that is not registered or asked to leave
(``NotRegistered``), whose stake is below the ledger's ``minStake`` (``StakeBelowMinimum``, e.g. slashed), whose
reputation is below the bounty's minimum (``NotEligible``), or that declares a cumulative epsilon over the bounty's
privacy budget (``PrivacyBudgetExceeded``). In ``commitUpdatesSigned`` one such commitment reverts the whole batch,
so the aggregator asks the same questions at upload (:func:`aggregator.service.verify.check_uploader`), again
before posting a batch, and when inviting (:func:`aggregator.service.selection.eligible`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.protocol import RejectionCode
from ledger.client import Institution


@dataclass(frozen=True, kw_only=True)
class CommitRule:
    """The numbers the contract's commit rule reads: the ledger's minimum stake (wei), the bounty's minimum
    reputation (basis points) and privacy budget (epsilon in millionths; 0: no differential privacy)."""

    min_stake: int
    min_reputation: int
    epsilon_budget: int = 0


def commit_refusal(institution: Institution, rule: CommitRule, declared_epsilon: int = 0
                   ) -> tuple[RejectionCode, str] | None:
    """Why the contract would refuse ``institution``'s commitment declaring ``declared_epsilon``, as (code, one line),
    or None when it would take it. Checks in the contract's order."""
    who = institution.address
    if not institution.registered or institution.leave_requested_at != 0:
        return RejectionCode.NOT_REGISTERED, f"signer {who} is not a registered institution (or asked to leave)"
    if institution.stake < rule.min_stake:
        return RejectionCode.NOT_ELIGIBLE, (f"{who} stakes {institution.stake} wei, below the minimum stake of "
                                            f"{rule.min_stake} wei: the contract refuses its commitments")
    if institution.reputation < rule.min_reputation:
        return RejectionCode.NOT_ELIGIBLE, (f"{who} has reputation {institution.reputation}, below the bounty's "
                                            f"minimum of {rule.min_reputation}")
    if declared_epsilon > rule.epsilon_budget:
        return RejectionCode.NOT_ELIGIBLE, (f"{who}'s commitment declares epsilon {declared_epsilon} millionths, "
                                            f"over the bounty's privacy budget of {rule.epsilon_budget}")
    return None
