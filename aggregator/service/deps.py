"""FastAPI dependencies, as ``Annotated`` aliases (override them in tests with ``app.dependency_overrides``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from aggregator.service.context import ServiceContext
from aggregator.service.rejection import Rejected
from fedcore.protocol import MAX_PATH_NUMBER, RejectionCode


def get_context(request: Request) -> ServiceContext:
    """The shared :class:`ServiceContext` (set by the app's lifespan)."""
    context = getattr(request.app.state, "context", None)
    if context is None:
        raise Rejected(RejectionCode.UNAVAILABLE, "the aggregator is starting: try again in a moment")
    return context


Context = Annotated[ServiceContext, Depends(get_context)]


def get_upload_limit(context: Context) -> int:
    """Largest update body accepted, in bytes: the model's encoded size, or ``--max-upload-bytes`` if smaller."""
    return min(context.settings.max_upload_bytes, context.update_size)


UploadLimit = Annotated[int, Depends(get_upload_limit)]


#: A round number in a path: 1 .. MAX_PATH_NUMBER, else MALFORMED (400) before any look-up.
RoundNumber = Annotated[int, Path(ge=1, le=MAX_PATH_NUMBER, description="a round of the bounty, from 1")]


def known_bounty(context: Context, bounty_id: Annotated[
        int, Path(ge=1, le=MAX_PATH_NUMBER, description="the bounty this aggregator runs")]) -> int:
    """The path's bounty id, if it is the one this aggregator serves (UNKNOWN_BOUNTY otherwise)."""
    if bounty_id != context.bounty_id:
        raise Rejected(RejectionCode.UNKNOWN_BOUNTY,
                       f"unknown bounty {bounty_id}: this aggregator serves bounty {context.bounty_id}")
    return bounty_id


BountyId = Annotated[int, Depends(known_bounty)]
