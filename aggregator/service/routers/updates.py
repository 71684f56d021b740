"""``POST /bounties/{bounty_id}/rounds/{round}/updates`` (institutions) and
``GET /bounties/{bounty_id}/rounds/{round}/updates/{sha256}`` (auditors, once the round is closed).

The upload body is the update's canonical safetensors bytes; ``X-Update-Sha256`` is its sha256 and
``X-Signature`` is ``fedcore.signing.sign_upload(account, chain_id, ledger_address, bounty_id, round, sha256)``.
The service protects itself before it reads the body: the size is capped by the model's encoded size, the signer
and its commitment are checked on the headers alone, at most ``max_concurrent_uploads`` bodies are read at once
and one per signer (more: 503 ``busy`` with ``Retry-After``), and a body must arrive within
``upload_read_timeout`` seconds (408).
See :mod:`aggregator.service.verify` for the checks and their rejection codes. A refused upload changes nothing but
the note of why it was refused, kept for an institution invited to the round (``StateDB.note_refusal``).
"""

from __future__ import annotations

import asyncio
import math
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from aggregator.service import views
from aggregator.service.deps import BountyId, Context, RoundNumber, UploadLimit
from aggregator.service.rejection import Rejected, error_responses
from aggregator.service.routers.models import SHA_PATH, _binary, blob_response
from aggregator.service.state import RoundNotAccepting
from aggregator.service.store import normalize_sha
from aggregator.service.verify import (
    check_body,
    check_uploader,
    parse_signature,
    parse_signed_commitment,
    parse_update_sha,
    upload_signer,
)
from fedcore.protocol import (
    COMMITMENT_SIGNATURE_HEADER,
    DECLARED_EPSILON_HEADER,
    SAMPLE_COUNT_HEADER,
    SIGNATURE_HEADER,
    UPDATE_SHA_HEADER,
    UploadAccepted,
)
from fedcore.protocol import RejectionCode as Code

router = APIRouter(tags=["updates"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the update (w_local - w_global) as canonical safetensors bytes (fedcore.codec.encode)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class UploadGate:
    """At most ``slots`` upload bodies are read at once, and at most one per signer, so one registered institution
    cannot take every slot; an upload that finds no room is refused at once with 503 ``busy`` and ``Retry-After``."""

    def __init__(self, *, slots: int, retry_after: int):
        self._slots = asyncio.Semaphore(slots)
        self._signers: set[str] = set()
        self.retry_after = retry_after

    def _busy(self, detail: str) -> Rejected:
        return Rejected(Code.BUSY, f"{detail}: retry in {self.retry_after} s",
                        headers={"Retry-After": str(self.retry_after)})

    @asynccontextmanager
    async def slot(self):
        if self._slots.locked():
            raise self._busy("every upload slot is taken")
        async with self._slots:
            yield

    @contextmanager
    def signer(self, signer: str):
        if signer in self._signers:
            raise self._busy(f"an upload by {signer} is already being received")
        self._signers.add(signer)
        try:
            yield
        finally:
            self._signers.discard(signer)


def upload_gate(request: Request, context) -> UploadGate:
    """The app's :class:`UploadGate`, made on first use from the settings."""
    state = request.app.state
    if getattr(state, "upload_gate", None) is None:
        settings = context.settings
        state.upload_gate = UploadGate(slots=settings.max_concurrent_uploads,
                                       retry_after=max(1, math.ceil(settings.upload_read_timeout / 2)))
    return state.upload_gate


def declared_length(request: Request, limit: int) -> int | None:
    """``Content-Length``, refused (TOO_LARGE) over ``limit`` and (MALFORMED) when zero or not a number."""
    length = request.headers.get("content-length")
    if length is None:
        return None
    if not length.strip().isdigit():
        raise Rejected(Code.MALFORMED, "malformed Content-Length header")
    if int(length) > limit:
        raise Rejected(Code.TOO_LARGE, f"update body of {int(length)} bytes is over the limit of {limit} bytes")
    if int(length) == 0:
        raise Rejected(Code.MALFORMED, "empty body: send the update's safetensors bytes")
    return int(length)


async def read_limited(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refusing (TOO_LARGE) as soon as more than ``limit`` bytes arrived and (BODY_TIMEOUT) when it has
    not arrived in full within ``timeout`` seconds."""

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected(Code.TOO_LARGE, f"update body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise Rejected(Code.BODY_TIMEOUT, f"the update body did not arrive within {timeout:g} seconds") from None


@router.post(
    "/bounties/{bounty_id}/rounds/{round}/updates",
    status_code=202,
    response_model=UploadAccepted,
    openapi_extra=_UPLOAD_BODY,
    responses=error_responses(
        Code.MALFORMED, Code.UNSIGNED, Code.BAD_SIGNATURE, Code.NOT_REGISTERED, Code.NOT_COMMITTED, Code.NOT_SELECTED,
        Code.NOT_ELIGIBLE, Code.UNKNOWN_BOUNTY, Code.HASH_MISMATCH, Code.ROUND_CLOSED, Code.DUPLICATE_UPLOAD,
        Code.TOO_LARGE, Code.BODY_TIMEOUT, Code.BUSY,
    ),
    summary="Upload an update (202; a second upload for the round answers 409 duplicate_upload and changes nothing)",
)
async def upload_update(
    bounty_id: BountyId,
    round: RoundNumber,
    request: Request,
    context: Context,
    limit: UploadLimit,
    x_update_sha256: Annotated[
        str | None, Header(alias=UPDATE_SHA_HEADER, description="sha256 of the body, 64 hex")
    ] = None,
    x_signature: Annotated[
        str | None, Header(alias=SIGNATURE_HEADER, description="0x 65-byte EIP-191 signature of the upload message")
    ] = None,
    x_commitment_signature: Annotated[
        str | None, Header(alias=COMMITMENT_SIGNATURE_HEADER,
                           description="gasless commitment: 0x 65-byte EIP-712 signature over the commitment")
    ] = None,
    x_sample_count: Annotated[
        str | None, Header(alias=SAMPLE_COUNT_HEADER, description="gasless commitment: the sample count it signed")
    ] = None,
    x_declared_epsilon: Annotated[
        str | None, Header(alias=DECLARED_EPSILON_HEADER,
                           description="gasless commitment: the cumulative DP epsilon it signed, in millionths (0)")
    ] = None,
) -> UploadAccepted:
    declared_length(request, limit)
    digest = parse_update_sha(x_update_sha256)
    signature = parse_signature(x_signature)
    gasless = parse_signed_commitment(x_commitment_signature, x_sample_count, x_declared_epsilon)
    gate = upload_gate(request, context)
    async with gate.slot():
        signer = await run_in_threadpool(upload_signer, context, round, digest, signature)
        try:
            signed = await run_in_threadpool(check_uploader, context, round, digest, signer, gasless)
            with gate.signer(signer):
                body = await read_limited(request, limit, context.settings.upload_read_timeout)
                if not body:
                    raise Rejected(Code.MALFORMED, "empty body: send the update's safetensors bytes")
                await run_in_threadpool(check_body, context, body, digest, limit)
                try:
                    existing, created = await run_in_threadpool(
                        context.state.accept_upload, round, signer, digest.hex(), len(body),
                        lambda: context.blobs.put("updates", body), signed,
                    )
                except RoundNotAccepting as exc:
                    raise Rejected(Code.ROUND_CLOSED, str(exc)) from None
        except Rejected as exc:  # the aggregator's reason, for the committee listing (invitees only)
            if exc.code != Code.DUPLICATE_UPLOAD:
                await run_in_threadpool(context.state.note_refusal, round, signer, exc.code, exc.detail)
            raise
    if not created:  # a concurrent upload of the same institution got in first
        raise Rejected(Code.DUPLICATE_UPLOAD,
                       f"{signer} already has update 0x{existing.sha256} accepted in round {round}")
    return UploadAccepted(sha256="0x" + digest.hex(), institution=signer, round=round)


@router.get(
    "/bounties/{bounty_id}/rounds/{round}/updates/{sha256}", response_class=Response,
    responses={**_binary("an update accepted in this round"), **error_responses(Code.ROUND_OPEN)},
    summary="Download an update accepted in a round (safetensors), for auditors, once the round is closed",
)
def get_update(bounty_id: BountyId, round: RoundNumber, sha256: SHA_PATH, context: Context) -> Response:
    record = context.state.round(round)
    if record is not None and not views.updates_public(context, record):  # before the lookup: a probe learns nothing
        raise Rejected(Code.ROUND_OPEN, f"round {round}'s uploads are sealed until its commit window closes "
                       "(on a bounty with a scoring committee, until the round is over; members fetch them signed)")
    if normalize_sha(sha256) not in context.state.upload_shas(round):
        raise Rejected(Code.NOT_FOUND, f"no update 0x{normalize_sha(sha256)} was accepted in round {round}")
    return blob_response(context, "updates", sha256)
