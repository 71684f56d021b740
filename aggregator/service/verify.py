"""What an upload must pass to be stored, and what a round's uploads must pass again to be used.

Upload checks, in order (the first failure is the answer; nothing is stored for a refused upload). All but the
last two run on the headers alone, before a byte of the body is read (:func:`upload_signer`, :func:`check_uploader`).
A refusal after the signer is known is noted for an institution invited to the round (its latest one), so the
committee listing can give the aggregator's reason for an invited committer whose update it does not serve:

=====  =================  ===================================================================================
413    TOO_LARGE          ``Content-Length`` over the limit (the model's encoded size, or less) (router)
400    MALFORMED          ``X-Update-Sha256`` missing or not 64 hex digits
401    UNSIGNED           ``X-Signature`` missing
401    BAD_SIGNATURE      ``X-Signature`` not 65 bytes of hex
503    BUSY               every upload slot is taken; ``Retry-After`` says when to retry (router)
401    BAD_SIGNATURE      ``X-Signature`` not recoverable
409    DUPLICATE_UPLOAD   the signer's update for this round is already accepted (nothing changes)
409    ROUND_CLOSED       the round is not the open one (unknown, wrong number, closed for scoring, finalized)
403    NOT_REGISTERED     the signer is not a registered institution
403    NOT_COMMITTED      the signer has not committed in this round, and sent no gasless commitment
401    BAD_SIGNATURE      ``X-Commitment-Signature`` (gasless commitment) malformed or not signed by the signer
400    MALFORMED          ``X-Sample-Count`` missing or not a positive integer with a commitment signature, or
                          ``X-Declared-Epsilon`` not an integer in [0, 2**64)
403    NOT_REGISTERED     a gasless committer asked to leave, or
403    NOT_ELIGIBLE       its stake is below the minimum (e.g. slashed), its reputation below the bounty's minimum,
                          or it declares more epsilon than the bounty's privacy budget: the contract's commit rule
                          (:mod:`aggregator.service.eligibility`, read once per round), which would otherwise
                          revert the whole batch of signed commitments
403    NOT_SELECTED       the signer was not invited to the round (aggregator.service.selection)
409    HASH_MISMATCH      ``X-Update-Sha256``, bound to the signer (fedcore.commitments), is not its on-chain commitment
       -- then the body is streamed, capped at the limit (413) and the read timeout (408 BODY_TIMEOUT) --
409    HASH_MISMATCH      sha256 of the body is not ``X-Update-Sha256`` (:func:`check_body`)
400    MALFORMED          the body does not decode to the model's tensors (names, shapes, float32), or holds
                          NaN/Inf, or is not canonical safetensors
=====  =================  ===================================================================================
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np

from aggregator.service.eligibility import commit_refusal
from aggregator.service.rejection import Rejected
from fedcore import codec
from fedcore.commitments import bind_commitment, recover_commitment_signer
from fedcore.errors import CodecError, DataError
from fedcore.protocol import (
    COMMITMENT_SIGNATURE_HEADER,
    DECLARED_EPSILON_HEADER,
    SAMPLE_COUNT_HEADER,
    UPDATE_SHA_HEADER,
    RejectionCode,
    RoundStep,
)
from fedcore.signing import recover_upload_signer
from ledger.client import Commitment, SignedCommitment

SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")
UPDATE_SHA = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
ZERO_HASH = bytes(32)


def parse_signature(header: str | None) -> str:
    """The ``X-Signature`` value, checked for shape only (0x + 130 hex digits)."""
    if header is None or not header.strip():
        raise Rejected(RejectionCode.UNSIGNED,
                       "missing X-Signature header: sign the upload with fedcore.signing.sign_upload")
    value = header.strip()
    if not SIGNATURE.match(value):
        raise Rejected(RejectionCode.BAD_SIGNATURE,
                       "malformed X-Signature: expected 0x followed by 130 hex digits (65 bytes)")
    return value


def recover_signer(signature: str, *, chain_id: int, ledger_address: str, bounty_id: int, round_: int,
                   digest: bytes) -> str:
    try:
        return recover_upload_signer(signature, chain_id, ledger_address, bounty_id, round_, digest)
    except DataError as exc:
        raise Rejected(RejectionCode.BAD_SIGNATURE, f"X-Signature does not verify: {exc}") from None


def parse_update_sha(header: str | None) -> bytes:
    """The ``X-Update-Sha256`` value as 32 bytes (MALFORMED when missing or not 64 hex digits)."""
    if header is None or not UPDATE_SHA.match(header.strip()):
        raise Rejected(RejectionCode.MALFORMED,
                       f"missing or malformed {UPDATE_SHA_HEADER} header: send the update's sha256 as 64 hex digits")
    return bytes.fromhex(header.strip().removeprefix("0x"))


def commitment_matches(context, round_: int, signer: str, commitment: bytes, digest: bytes) -> bool:
    """Whether ``signer``'s on-chain ``commitment`` in ``round_`` commits to the update whose sha256 is ``digest``:
    the commitment binds the committer (:func:`bound_commitment`), so a copied commitment matches nobody but
    its owner."""
    return commitment == bound_commitment(context, round_, signer, digest)


def parse_signed_commitment(signature: str | None, sample_count: str | None,
                            declared_epsilon: str | None = None) -> tuple[bytes, int, int] | None:
    """The gasless commitment headers (``X-Commitment-Signature``, ``X-Sample-Count``, ``X-Declared-Epsilon``) as
    (65 bytes, count, epsilon in millionths; an absent epsilon is 0), or None when the uploader committed on chain
    itself (no signature header)."""
    if signature is None:
        return None
    value = signature.strip()
    if not SIGNATURE.match(value):
        raise Rejected(RejectionCode.BAD_SIGNATURE,
                       f"malformed {COMMITMENT_SIGNATURE_HEADER}: expected 0x followed by 130 hex digits (65 bytes)")
    count = (sample_count or "").strip()
    if not count.isdigit() or not 0 < int(count) < 2**64:
        raise Rejected(RejectionCode.MALFORMED, f"a gasless commitment needs {SAMPLE_COUNT_HEADER}: a positive integer")
    epsilon = (declared_epsilon or "0").strip()
    if not epsilon.isdigit() or not int(epsilon) < 2**64:
        raise Rejected(RejectionCode.MALFORMED,
                       f"{DECLARED_EPSILON_HEADER} must be the cumulative epsilon in millionths: an integer >= 0")
    return bytes.fromhex(value[2:]), int(count), int(epsilon)


def upload_signer(context, round_: int, digest: bytes, signature: str) -> str:
    """Who signed the upload of ``digest`` for ``round_`` (``signature``: the ``X-Signature`` header, already
    shape-checked by :func:`parse_signature`); BAD_SIGNATURE when it does not recover."""
    return recover_signer(signature, chain_id=context.chain_id, ledger_address=context.ledger_address,
                          bounty_id=context.bounty_id, round_=round_, digest=digest)


def check_uploader(context, round_: int, digest: bytes, signer: str,
                   gasless: tuple[bytes, int, int] | None = None) -> SignedCommitment | None:
    """Every upload check after the signature that needs no body (see the module doc); raises :class:`Rejected`.

    Returns, for an uploader that has not committed on chain but signed its commitment (``gasless``, from
    :func:`parse_signed_commitment`), that commitment for the round's batch.

    Parameters
    ----------
    context : ServiceContext
    round_ : int
        The round in the URL (the one the signature must bind).
    digest : bytes
        The 32-byte sha256 the uploader claims for its body (``X-Update-Sha256``).
    signer : str
        The upload's signer (:func:`upload_signer`).
    """
    existing = context.state.upload_of(round_, signer)
    if existing is not None:
        raise Rejected(RejectionCode.DUPLICATE_UPLOAD,
                       f"{signer} already has update 0x{existing.sha256} accepted in round {round_}")
    record = context.state.round(round_)
    if record is None or record.step != RoundStep.OPEN:
        current = context.state.latest_round()
        where = f"current round {current.round} is {current.step}" if current else "no round has been opened yet"
        raise Rejected(RejectionCode.ROUND_CLOSED, f"round {round_} is not open for uploads ({where})")
    institution = context.ledger.institution(signer)
    if not institution.registered:
        raise Rejected(RejectionCode.NOT_REGISTERED, f"signer {signer} is not a registered institution")
    commitment = context.ledger.commitment_of(round_, signer)
    signed = None
    if commitment == ZERO_HASH:
        if gasless is None:
            raise Rejected(RejectionCode.NOT_COMMITTED,
                           f"signer {signer} has not committed an update in round {round_}")
        signed = _signed_commitment(context, round_, signer, digest, *gasless)
        refusal = commit_refusal(institution, context.commit_rule(round_), signed.declared_epsilon)
        if refusal is not None:  # refused here, so it never reverts the round's batch
            raise Rejected(*refusal)
        commitment = signed.commitment
    if signer not in set(record.selected):
        raise Rejected(RejectionCode.NOT_SELECTED, f"signer {signer} was not selected for round {round_}")
    if not commitment_matches(context, round_, signer, commitment, digest):
        raise Rejected(RejectionCode.HASH_MISMATCH,
                       f"{UPDATE_SHA_HEADER} 0x{digest.hex()} does not match {signer}'s commitment in round {round_} "
                       f"(0x{commitment.hex()})")
    return signed


def _signed_commitment(context, round_: int, signer: str, digest: bytes, signature: bytes,
                       sample_count: int, declared_epsilon: int) -> SignedCommitment:
    """The signer's gasless commitment to this upload, its signature checked as the contract will check it."""
    commitment = bound_commitment(context, round_, signer, digest)
    try:
        committer = recover_commitment_signer(signature, chain_id=context.chain_id, contract=context.ledger_address,
                                              bounty_id=context.bounty_id, round_=round_, commitment=commitment,
                                              sample_count=sample_count, declared_epsilon=declared_epsilon)
    except DataError as exc:
        raise Rejected(RejectionCode.BAD_SIGNATURE, f"{COMMITMENT_SIGNATURE_HEADER} does not verify: {exc}") from None
    if committer != signer:
        raise Rejected(RejectionCode.BAD_SIGNATURE,
                       f"{COMMITMENT_SIGNATURE_HEADER} is not {signer}'s signature over its commitment to this update "
                       f"in round {round_} with {sample_count} samples and epsilon {declared_epsilon}")
    return SignedCommitment(signer, commitment, sample_count, signature, declared_epsilon)


def check_body(context, body: bytes, digest: bytes, limit: int) -> None:
    """The body is the update the headers announced and decodes to the model's tensors; :class:`Rejected` if not."""
    actual = hashlib.sha256(body).digest()
    if actual != digest:
        raise Rejected(RejectionCode.HASH_MISMATCH,
                       f"the body hashes to 0x{actual.hex()} but {UPDATE_SHA_HEADER} says 0x{digest.hex()}")
    decode_update(body, context.expected, limit)


def decode_update(
    body: bytes, expected: Mapping[str, tuple[tuple[int, ...], str]], max_bytes: int
) -> dict[str, np.ndarray]:
    """Decode an update against the model's tensors; :class:`Rejected` (MALFORMED) when it does not fit."""
    try:
        return codec.decode(body, expected=expected, max_bytes=max_bytes)
    except CodecError as exc:
        raise Rejected(RejectionCode.MALFORMED, f"update rejected: {exc}") from None


def bound_commitment(context, round_: int, institution: str, update_sha256: bytes) -> bytes:
    """What ``institution`` must have committed in ``round_`` of this bounty for the update hashing to ``update_sha256``
    (:func:`fedcore.commitments.bind_commitment`): the one test of "does this signer's commitment match these bytes"."""
    return bind_commitment(chain_id=context.chain_id, contract=context.ledger_address, bounty_id=context.bounty_id,
                           round_=round_, institution=institution, update_sha256=update_sha256)


@dataclass(frozen=True)
class MatchedUpdate:
    """A committed update whose upload matches its committer's binding (``sha256``: 64 hex, no ``0x``)."""

    commitment: Commitment
    sha256: str


def select_updates(
    commitments: Mapping[str, Commitment],
    uploads: Mapping[str, str],
    binding: Callable[[str, bytes], bytes],
    selected: Collection[str] | None = None,
    refusals: Mapping[str, str] | None = None,
) -> tuple[dict[str, MatchedUpdate], dict[str, str]]:
    """Decide which committed updates a round uses (pure but for ``binding``, itself a pure hash).

    Parameters
    ----------
    commitments : institution -> Commitment
        The round's on-chain commitments.
    uploads : institution -> sha256 hex (no 0x)
        Accepted uploads.
    binding : callable (institution, update sha256 bytes) -> bytes
        The commitment that institution must have made for those bytes (:func:`bound_commitment`).
    selected : collection of str, optional
        Only these institutions may take part (reputation selection); ``None`` lets every committer in.
    refusals : institution -> "code: detail", optional
        The aggregator's latest refusal of each invitee's upload (``StateDB.refusals``, or the committee listing's
        ``refused``): the reason given for a committer without an accepted upload.

    Returns
    -------
    (kept, excluded)
        ``kept``: institution -> MatchedUpdate, for uploads whose hash bound to their signer is that signer's
        commitment; ``excluded``: institution -> reason for every other committer or uploader. Two institutions
        with identical updates are both kept (their commitments differ); a copied commitment matches nobody's
        upload but its owner's.
    """
    allowed = None if selected is None else set(selected)
    kept: dict[str, MatchedUpdate] = {}
    excluded: dict[str, str] = {}
    for institution in sorted(commitments):
        commitment = commitments[institution]
        sha = uploads.get(institution)
        if allowed is not None and institution not in allowed:
            excluded[institution] = "not selected for this round"
        elif sha is None and institution in (refusals or {}):
            excluded[institution] = f"committed; its upload was refused ({(refusals or {})[institution]})"
        elif sha is None:
            excluded[institution] = "committed but did not upload"
        elif binding(institution, bytes.fromhex(sha)) != commitment.update_hash:
            excluded[institution] = "upload does not match the commitment"
        else:
            kept[institution] = MatchedUpdate(commitment, sha)
    for institution in sorted(set(uploads) - set(commitments)):
        excluded[institution] = "uploaded without a commitment"
    return kept, excluded
