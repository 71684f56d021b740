"""``GET /bounties/{bounty_id}/task`` and ``GET /bounties/{bounty_id}/rules``."""

from __future__ import annotations

from fastapi import APIRouter

from aggregator.service.deps import BountyId, Context
from aggregator.service.rejection import error_responses
from fedcore.protocol import RejectionCode, TaskInfo

router = APIRouter(tags=["tasks"])


@router.get(
    "/bounties/{bounty_id}/task", response_model=TaskInfo, responses=error_responses(RejectionCode.UNKNOWN_BOUNTY),
    summary="The bounty's task spec (TaskSpec.to_dict(); its task_hash is the bounty's taskSpecHash)",
)
def get_task(bounty_id: BountyId, context: Context) -> dict:
    return context.spec.to_dict()


@router.get(
    "/bounties/{bounty_id}/rules", responses=error_responses(RejectionCode.UNKNOWN_BOUNTY),
    summary="The bounty's round rules (fedcore.rules.RoundRules as JSON; their rules_hash is the bounty's rulesHash)",
)
def get_rules(bounty_id: BountyId, context: Context) -> dict:
    return context.rules.to_dict()
