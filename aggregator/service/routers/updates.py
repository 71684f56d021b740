"""``POST /bounties/{bounty_id}/rounds/{round}/updates`` (institutions) and
``GET /bounties/{bounty_id}/rounds/{round}/updates/{sha256}`` (auditors).

The upload body is the update's canonical safetensors bytes; ``X-Signature`` is
``fedcore.signing.sign_upload(account, chain_id, ledger_address, bounty_id, round, sha256(body))``.
See :mod:`aggregator.service.verify` for the checks and their status codes. A refused upload changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from aggregator.service.deps import BountyId, Context, UploadLimit
from aggregator.service.routers.models import SHA_PATH, _binary, blob_response
from aggregator.service.schemas import ErrorResponse, UploadAccepted
from aggregator.service.state import RoundNotAccepting
from aggregator.service.store import normalize_sha
from aggregator.service.verify import UploadRejected, parse_signature, verify_upload

router = APIRouter(tags=["updates"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the update (w_local - w_global) as canonical safetensors bytes (fedcore.codec.encode)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}




async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as more than ``limit`` bytes arrived."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"update body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/bounties/{bounty_id}/rounds/{round}/updates",
    status_code=202,
    response_model=UploadAccepted,
    openapi_extra=_UPLOAD_BODY,
    responses={
        400: {"model": ErrorResponse, "description": "not canonical safetensors, wrong tensors/shapes/dtypes, NaN/Inf"},
        401: {"model": ErrorResponse, "description": "X-Signature missing or malformed"},
        403: {"model": ErrorResponse, "description": "signer not registered, not committed in this round, or not selected"},
        404: {"model": ErrorResponse, "description": "unknown bounty"},
        409: {"model": ErrorResponse, "description": "body does not match the signer's commitment, or round not open"},
        413: {"model": ErrorResponse, "description": "body over --max-upload-bytes"},
    },
    summary="Upload an update (202; re-uploading the same bytes answers the same)",
)
async def upload_update(
    bounty_id: BountyId,
    round: Annotated[int, Path(ge=1)],
    request: Request,
    context: Context,
    limit: UploadLimit,
    x_signature: Annotated[str | None, Header(alias="X-Signature", description="0x 65-byte EIP-191 signature of the upload message")] = None,
) -> UploadAccepted:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise HTTPException(400, "malformed Content-Length header")
        if int(length) > limit:
            raise HTTPException(413, f"update body of {int(length)} bytes is over the limit of {limit} bytes")
    try:
        signature = parse_signature(x_signature)
    except UploadRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    body = await read_limited(request, limit)
    if not body:
        raise HTTPException(400, "empty body: send the update's safetensors bytes")
    try:
        verified = await run_in_threadpool(verify_upload, context, round, body, signature)
        if not verified.already_accepted:
            await run_in_threadpool(
                context.state.accept_upload, round, verified.institution, verified.sha256, len(body),
                lambda: context.blobs.put("updates", body),
            )
    except UploadRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    except RoundNotAccepting as exc:
        raise HTTPException(409, str(exc)) from None
    return UploadAccepted(sha256="0x" + verified.sha256, institution=verified.institution, round=round)


@router.get(
    "/bounties/{bounty_id}/rounds/{round}/updates/{sha256}", response_class=Response,
    responses=_binary("an update accepted in this round"),
    summary="Download an update accepted in a round (safetensors), for auditors",
)
def get_update(bounty_id: BountyId, round: Annotated[int, Path(ge=1)], sha256: SHA_PATH, context: Context) -> Response:
    if normalize_sha(sha256) not in context.state.upload_shas(round):
        raise HTTPException(404, f"no update 0x{normalize_sha(sha256)} was accepted in round {round}")
    return blob_response(context, "updates", sha256)
