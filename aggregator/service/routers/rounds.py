"""``GET /bounties/{bounty_id}/rounds/current`` and ``GET /bounties/{bounty_id}/rounds/{round}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from aggregator.service import views
from aggregator.service.deps import BountyId, Context
from aggregator.service.schemas import CurrentRound, ErrorResponse, RoundDetail

router = APIRouter(tags=["rounds"])


@router.get(
    "/bounties/{bounty_id}/rounds/current", response_model=CurrentRound, responses={404: {"model": ErrorResponse}},
    summary="The round to work on: number, status, global-model hash, commit deadline, invited institutions",
)
def get_current_round(bounty_id: BountyId, context: Context) -> CurrentRound:
    return views.current_round(context)


@router.get(
    "/bounties/{bounty_id}/rounds/{round}", response_model=RoundDetail, responses={404: {"model": ErrorResponse}},
    summary="One round's record: uploads, used and excluded updates, scores, settings, transactions",
)
def get_round(bounty_id: BountyId, round: Annotated[int, Path(ge=1)], context: Context) -> RoundDetail:
    record = context.state.round(round)
    if record is None:
        raise HTTPException(404, f"round {round} of bounty {bounty_id} is not known to this aggregator")
    return views.round_detail(context, record)
