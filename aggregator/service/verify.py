"""What an upload must pass to be stored, and what a round's uploads must pass again to be used.

Upload checks, in order (the first failure is the answer; nothing is stored for a refused upload). All but the
last two run on the headers alone, before a byte of the body is read (:func:`check_uploader`):

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
403    NOT_COMMITTED      the signer has not committed in this round
403    NOT_SELECTED       (reputation selection) the signer was not invited to the round
409    HASH_MISMATCH      the signer's on-chain commitment does not match ``X-Update-Sha256``
       -- then the body is streamed, capped at the limit (413) and the read timeout (408 BODY_TIMEOUT) --
409    HASH_MISMATCH      sha256 of the body is not ``X-Update-Sha256`` (:func:`check_body`)
400    MALFORMED          the body does not decode to the model's tensors (names, shapes, float32), or holds
                          NaN/Inf, or is not canonical safetensors
=====  =================  ===================================================================================
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Collection, Mapping

import numpy as np

from aggregator.service.gateway import Commitment
from aggregator.service.rejection import Rejected
from fedcore import codec
from fedcore.errors import CodecError, DataError
from fedcore.protocol import UPDATE_SHA_HEADER, RejectionCode, RoundStep
from fedcore.signing import recover_upload_signer

SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}$")
UPDATE_SHA = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
ZERO_HASH = bytes(32)


def parse_signature(header: str | None) -> str:
    """The ``X-Signature`` value, checked for shape only (0x + 130 hex digits)."""
    if header is None or not header.strip():
        raise Rejected(RejectionCode.UNSIGNED, "missing X-Signature header: sign the upload with fedcore.signing.sign_upload")
    value = header.strip()
    if not SIGNATURE.match(value):
        raise Rejected(RejectionCode.BAD_SIGNATURE, "malformed X-Signature: expected 0x followed by 130 hex digits (65 bytes)")
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
    """Whether ``signer``'s on-chain ``commitment`` in ``round_`` commits to the update whose sha256 is ``digest``.

    The one place the upload check decides it (the commitment's encoding is owned elsewhere).
    """
    return commitment == digest


def check_uploader(context, round_: int, digest: bytes, signature: str) -> str:
    """Every upload check that needs no body (see the module doc); returns the signer, raises :class:`Rejected`.

    Parameters
    ----------
    context : ServiceContext
    round_ : int
        The round in the URL (the one the signature must bind).
    digest : bytes
        The 32-byte sha256 the uploader claims for its body (``X-Update-Sha256``).
    signature : str
        The ``X-Signature`` header, already shape-checked by :func:`parse_signature`.
    """
    signer = recover_signer(signature, chain_id=context.chain_id, ledger_address=context.ledger_address,
                            bounty_id=context.bounty_id, round_=round_, digest=digest)
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
    if commitment == ZERO_HASH:
        raise Rejected(RejectionCode.NOT_COMMITTED, f"signer {signer} has not committed an update in round {round_}")
    if context.settings.selection == "reputation" and signer not in set(record.selected):
        raise Rejected(RejectionCode.NOT_SELECTED, f"signer {signer} was not selected for round {round_}")
    if not commitment_matches(context, round_, signer, commitment, digest):
        raise Rejected(RejectionCode.HASH_MISMATCH,
                       f"{UPDATE_SHA_HEADER} 0x{digest.hex()} does not match {signer}'s commitment in round {round_} "
                       f"(0x{commitment.hex()})")
    return signer


def check_body(context, body: bytes, digest: bytes, limit: int) -> None:
    """The body is the update the headers announced and decodes to the model's tensors; :class:`Rejected` if not."""
    actual = hashlib.sha256(body).digest()
    if actual != digest:
        raise Rejected(RejectionCode.HASH_MISMATCH,
                       f"the body hashes to 0x{actual.hex()} but {UPDATE_SHA_HEADER} says 0x{digest.hex()}")
    decode_update(body, context.expected, limit)


def decode_update(body: bytes, expected: Mapping[str, tuple[tuple[int, ...], str]], max_bytes: int) -> dict[str, np.ndarray]:
    """Decode an update against the model's tensors; :class:`Rejected` (MALFORMED) when it does not fit."""
    try:
        return codec.decode(body, expected=expected, max_bytes=max_bytes)
    except CodecError as exc:
        raise Rejected(RejectionCode.MALFORMED, f"update rejected: {exc}") from None


def select_updates(
    commitments: Mapping[str, Commitment],
    uploads: Mapping[str, str],
    selected: Collection[str] | None = None,
) -> tuple[dict[str, Commitment], dict[str, str]]:
    """Decide which committed updates a round uses (pure).

    Parameters
    ----------
    commitments : institution -> Commitment
        The round's on-chain commitments.
    uploads : institution -> sha256 hex (no 0x)
        Accepted uploads.
    selected : collection of str, optional
        Only these institutions may take part (reputation selection); ``None`` lets every committer in.

    Returns
    -------
    (kept, excluded)
        ``kept``: institution -> Commitment, for uploads whose bytes match a commitment no one else made;
        ``excluded``: institution -> reason for every other committer or uploader. An update hash committed by
        two institutions is dropped for both.
    """
    copies = Counter(c.update_hash for c in commitments.values())
    allowed = None if selected is None else set(selected)
    kept: dict[str, Commitment] = {}
    excluded: dict[str, str] = {}
    for institution in sorted(commitments):
        commitment = commitments[institution]
        sha = uploads.get(institution)
        if copies[commitment.update_hash] > 1:
            excluded[institution] = (
                f"update hash 0x{commitment.update_hash.hex()} was committed by {copies[commitment.update_hash]} institutions"
            )
        elif allowed is not None and institution not in allowed:
            excluded[institution] = "not selected for this round"
        elif sha is None:
            excluded[institution] = "committed but did not upload"
        elif sha != commitment.update_hash.hex():
            excluded[institution] = "upload does not match the commitment"
        else:
            kept[institution] = commitment
    for institution in sorted(set(uploads) - set(commitments)):
        excluded[institution] = "uploaded without a commitment"
    return kept, excluded
