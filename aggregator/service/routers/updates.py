"""``POST /bounties/{bounty_id}/rounds/{round}/updates`` (institutions) and
``GET /bounties/{bounty_id}/rounds/{round}/updates/{sha256}`` (auditors).

The upload body is the update's canonical safetensors bytes; ``X-Signature`` is
``fedcore.signing.sign_upload(account, chain_id, ledger_address, bounty_id, round, sha256(body))``.
See :mod:`aggregator.service.verify` for the checks and their rejection codes. A refused upload changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from aggregator.service.deps import BountyId, Context, UploadLimit
from aggregator.service.rejection import Rejected, error_responses
from aggregator.service.routers.models import SHA_PATH, _binary, blob_response
from aggregator.service.state import RoundNotAccepting
from aggregator.service.store import normalize_sha
from aggregator.service.verify import parse_signature, verify_upload
from fedcore.protocol import RejectionCode as Code
from fedcore.protocol import UploadAccepted

router = APIRouter(tags=["updates"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the update (w_local - w_global) as canonical safetensors bytes (fedcore.codec.encode)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing (TOO_LARGE) as soon as more than ``limit`` bytes arrived."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(Code.TOO_LARGE, f"update body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/bounties/{bounty_id}/rounds/{round}/updates",
    status_code=202,
    response_model=UploadAccepted,
    openapi_extra=_UPLOAD_BODY,
    responses=error_responses(
        Code.MALFORMED, Code.UNSIGNED, Code.BAD_SIGNATURE, Code.NOT_REGISTERED, Code.NOT_COMMITTED, Code.NOT_SELECTED,
        Code.UNKNOWN_BOUNTY, Code.HASH_MISMATCH, Code.ROUND_CLOSED, Code.DUPLICATE_UPLOAD, Code.TOO_LARGE,
    ),
    summary="Upload an update (202; a second upload for the round answers 409 duplicate_upload and changes nothing)",
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
            raise Rejected(Code.MALFORMED, "malformed Content-Length header")
        if int(length) > limit:
            raise Rejected(Code.TOO_LARGE, f"update body of {int(length)} bytes is over the limit of {limit} bytes")
    signature = parse_signature(x_signature)
    body = await read_limited(request, limit)
    if not body:
        raise Rejected(Code.MALFORMED, "empty body: send the update's safetensors bytes")
    verified = await run_in_threadpool(verify_upload, context, round, body, signature)
    try:
        existing, created = await run_in_threadpool(
            context.state.accept_upload, round, verified.institution, verified.sha256, len(body),
            lambda: context.blobs.put("updates", body),
        )
    except RoundNotAccepting as exc:
        raise Rejected(Code.ROUND_CLOSED, str(exc)) from None
    if not created:  # a concurrent upload of the same institution got in first
        raise Rejected(Code.DUPLICATE_UPLOAD,
                       f"{verified.institution} already has update 0x{existing.sha256} accepted in round {round}")
    return UploadAccepted(sha256="0x" + verified.sha256, institution=verified.institution, round=round)


@router.get(
    "/bounties/{bounty_id}/rounds/{round}/updates/{sha256}", response_class=Response,
    responses=_binary("an update accepted in this round"),
    summary="Download an update accepted in a round (safetensors), for auditors",
)
def get_update(bounty_id: BountyId, round: Annotated[int, Path(ge=1)], sha256: SHA_PATH, context: Context) -> Response:
    if normalize_sha(sha256) not in context.state.upload_shas(round):
        raise Rejected(Code.NOT_FOUND, f"no update 0x{normalize_sha(sha256)} was accepted in round {round}")
    return blob_response(context, "updates", sha256)
