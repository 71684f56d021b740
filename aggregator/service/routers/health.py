"""``GET /health``."""

from __future__ import annotations

from fastapi import APIRouter

from aggregator.service.deps import Context
from fedcore.protocol import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness, and which bounty, chain and ledger this serves")
def health(context: Context) -> Health:
    return Health(
        bounty_id=context.bounty_id,
        chain_id=context.chain_id,
        ledger=context.ledger_address,
        aggregator=context.account.address,
        coordinator=context.status.phase,
        last_error=context.status.last_error,
    )
