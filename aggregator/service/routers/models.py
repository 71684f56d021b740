"""Models and server-optimizer states, as safetensors bytes.

``GET /bounties/{bounty_id}/model`` serves the current round's global model (check its sha256 against the
chain's ``round.globalModelHash``); ``/models/{sha256}`` and ``/states/{sha256}`` serve any stored model or
optimizer state by hash (for auditors; the final model of a completed bounty is ``/models/{new_model_hash}``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from aggregator.service import views
from aggregator.service.deps import BountyId, Context
from aggregator.service.rejection import Rejected, error_responses
from aggregator.service.store import normalize_sha
from fedcore.errors import AggregatorError
from fedcore.protocol import RejectionCode

router = APIRouter(tags=["models"])

OCTET = "application/octet-stream"
SHA_PATH = Annotated[str, Path(description="sha256 as 64 hex digits, with or without 0x",
                               pattern=r"^(0x)?[0-9a-fA-F]{64}$")]


def _binary(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {OCTET: {"schema": {"type": "string", "format": "binary"}}}},
            **error_responses(RejectionCode.NOT_FOUND, RejectionCode.UNKNOWN_BOUNTY)}


def blob_response(context, kind: str, sha: str, headers: dict[str, str] | None = None) -> Response:
    try:
        key = normalize_sha(sha)
        data = context.blobs.get(kind, key)
    except AggregatorError:
        raise Rejected(RejectionCode.NOT_FOUND,
                       f"no {kind[:-1]} 0x{sha.removeprefix('0x').lower()} is stored here") from None
    return Response(content=data, media_type=OCTET, headers={"X-Sha256": "0x" + key, **(headers or {})})


@router.get(
    "/bounties/{bounty_id}/model", response_class=Response,
    responses=_binary("the current round's global model; headers X-Model-Sha256 and X-Round"),
    summary="The current global model (safetensors)",
)
def get_current_model(bounty_id: BountyId, context: Context) -> Response:
    record = views.current_record(context)
    if record is None:
        raise Rejected(RejectionCode.NOT_FOUND, f"no round of bounty {bounty_id} has been opened yet")
    return blob_response(context, "models", record.global_model_sha,
                         {"X-Model-Sha256": "0x" + record.global_model_sha, "X-Round": str(record.round)})


@router.get("/bounties/{bounty_id}/models/{sha256}", response_class=Response,
            responses=_binary("a stored model"), summary="A stored model by sha256 (safetensors)")
def get_model(bounty_id: BountyId, sha256: SHA_PATH, context: Context) -> Response:
    return blob_response(context, "models", sha256)


@router.get("/bounties/{bounty_id}/states/{sha256}", response_class=Response,
            responses=_binary("a stored server-optimizer state"),
            summary="A stored server-optimizer state by sha256 (safetensors; m/<name>, v/<name>, step)")
def get_state(bounty_id: BountyId, sha256: SHA_PATH, context: Context) -> Response:
    return blob_response(context, "states", sha256)
