"""The scoring committee's routes (see :mod:`aggregator.service.committee`).

``GET /bounties/{id}/rounds/{r}/committee/updates`` lists a closed round's accepted uploads (and the refusals of
invited institutions' uploads that did not get in: the aggregator's reasons), and
``GET .../committee/updates/{sha256}`` serves one, to committee members only: headers ``X-Scorer-Signature``
(``fedcore.attestations.sign_fetch`` over ``item`` = ``list`` or the bare sha256) and ``X-Scorer-Time``.
``POST /bounties/{id}/rounds/{r}/attestations`` takes a member's signed outcome (202 with whether it matches the
aggregator's own, null before the aggregator scored).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from aggregator.service import committee, views
from aggregator.service.deps import BountyId, Context, RoundNumber
from aggregator.service.rejection import Rejected, error_responses
from aggregator.service.routers.models import SHA_PATH, _binary, blob_response
from aggregator.service.store import normalize_sha
from fedcore.protocol import (
    SCORER_SIGNATURE_HEADER,
    SCORER_TIME_HEADER,
    AttestationBody,
    AttestationInfo,
    CommitteeRound,
    RefusedUpload,
    RoundStep,
    UploadInfo,
)
from fedcore.protocol import RejectionCode as Code

router = APIRouter(tags=["committee"])

Signature = Annotated[str | None, Header(
    alias=SCORER_SIGNATURE_HEADER, description="a committee member's signature (fedcore.attestations.sign_fetch)")]
SignedAt = Annotated[str | None, Header(alias=SCORER_TIME_HEADER, description="when it was signed, unix seconds")]
_AUTH = (Code.UNSIGNED, Code.BAD_SIGNATURE, Code.NOT_SCORER, Code.ROUND_OPEN, Code.NOT_FOUND, Code.UNKNOWN_BOUNTY)


@router.get("/bounties/{bounty_id}/rounds/{round}/committee/updates", response_model=CommitteeRound,
            responses=error_responses(*_AUTH),
            summary="A closed round's accepted uploads, for the bounty's scoring committee")
def list_updates(bounty_id: BountyId, round: RoundNumber, context: Context, x_scorer_signature: Signature = None,
                 x_scorer_time: SignedAt = None) -> CommitteeRound:
    record = context.state.round(round)
    committee.authorize_fetch(context, record, round, "list", x_scorer_signature, x_scorer_time)
    assert record is not None  # authorize_fetch refuses an unknown round
    uploads = context.state.uploads(round)
    served = {u.institution for u in uploads}
    return CommitteeRound(
        bounty_id=bounty_id, round=round, global_model_hash="0x" + record.global_model_sha,
        selected=list(record.selected),
        uploads=[UploadInfo(institution=u.institution, sha256=u.sha256, size=u.size, received_at=u.received_at)
                 for u in uploads],
        refused=[RefusedUpload(institution=r.institution, code=Code(r.code), detail=r.detail, at=r.at)
                 for r in context.state.refusals(round) if r.institution not in served])


@router.get("/bounties/{bounty_id}/rounds/{round}/committee/updates/{sha256}", response_class=Response,
            responses={**_binary("an update accepted in this round"), **error_responses(*_AUTH)},
            summary="One accepted update of a closed round (safetensors), for the bounty's scoring committee")
def get_update(bounty_id: BountyId, round: RoundNumber, sha256: SHA_PATH, context: Context,
               x_scorer_signature: Signature = None, x_scorer_time: SignedAt = None) -> Response:
    key = normalize_sha(sha256)
    committee.authorize_fetch(context, context.state.round(round), round, key, x_scorer_signature, x_scorer_time)
    if key not in context.state.upload_shas(round):
        raise Rejected(Code.NOT_FOUND, f"no update 0x{key} was accepted in round {round}")
    return blob_response(context, "updates", key)


@router.post("/bounties/{bounty_id}/rounds/{round}/attestations", status_code=202, response_model=AttestationInfo,
             responses=error_responses(Code.BAD_SIGNATURE, Code.NOT_SCORER, Code.NOT_FOUND, Code.ROUND_CLOSED,
                                       Code.UNKNOWN_BOUNTY),
             summary="A committee member's attestation of the outcome it computed for a round")
def post_attestation(bounty_id: BountyId, round: RoundNumber, body: AttestationBody,
                     context: Context) -> AttestationInfo:
    record = context.state.round(round)
    if record is None:
        raise Rejected(Code.NOT_FOUND, f"round {round} is not known to this aggregator")
    outcome = committee.check_attestation(context, round, body)
    if record.step in (RoundStep.FINALIZED, RoundStep.LAPSED):
        raise Rejected(Code.ROUND_CLOSED, f"round {round} is already {record.step}")
    context.state.save_attestation(round, body.scorer, bytes.fromhex(body.signature[2:]), outcome)
    saved = next(a for a in context.state.attestations(round) if a.scorer == body.scorer)
    return views.attestation_info(saved, committee.own_outcome(context, record))

