"""``GET /bounties/{bounty_id}/rounds/current`` and ``GET /bounties/{bounty_id}/rounds/{round}``."""

from __future__ import annotations

from fastapi import APIRouter

from aggregator.service import views
from aggregator.service.deps import BountyId, Context, RoundNumber
from aggregator.service.rejection import Rejected, error_responses
from fedcore.protocol import RejectionCode, RoundInfo, RoundReport

router = APIRouter(tags=["rounds"])


@router.get(
    "/bounties/{bounty_id}/rounds/current", response_model=RoundInfo,
    responses=error_responses(RejectionCode.UNKNOWN_BOUNTY),
    summary="The round to work on: number, status, global-model hash, commit deadline, invited institutions, "
            "fit config",
)
def get_current_round(bounty_id: BountyId, context: Context) -> RoundInfo:
    return views.current_round(context)


@router.get(
    "/bounties/{bounty_id}/rounds/{round}", response_model=RoundReport,
    responses=error_responses(RejectionCode.NOT_FOUND, RejectionCode.UNKNOWN_BOUNTY),
    summary="One round's record: uploads (listed once the round is closed), used and excluded updates, scores, "
            "settings, transactions",
)
def get_round(bounty_id: BountyId, round: RoundNumber, context: Context) -> RoundReport:
    record = context.state.round(round)
    if record is None:
        raise Rejected(RejectionCode.NOT_FOUND, f"round {round} of bounty {bounty_id} is not known to this aggregator")
    return views.round_detail(context, record)
