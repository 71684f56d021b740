"""The scoring committee, seen from the aggregator: who sits on it (the chain's ``CommitteeNamed``), which requests
for a round's updates it answers, and which attestations count.

A bounty's committee is its aggregator plus the scorers the sponsor named at creation. Before a round is finalized,
only members may fetch its updates (:func:`authorize_fetch`: a recent request signed by a member), and only after
the round's commit window closed on chain and the aggregator closed it to uploads: nobody can copy an update while
it could still commit. A member posts its attestation (:func:`check_attestation`); the coordinator finalizes once
``quorum - 1`` members attested exactly its own outcome (:func:`matching_signatures`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from web3 import Web3

from aggregator.service.context import ServiceContext
from aggregator.service.rejection import Rejected
from aggregator.service.state import RoundState
from fedcore.attestations import recover_fetch_signer, recover_outcome_signer
from fedcore.errors import DataError
from fedcore.protocol import FETCH_MAX_AGE, AttestationBody, RoundStep
from fedcore.protocol import RejectionCode as Code


def members(context: ServiceContext) -> set[str]:
    """The bounty's committee: its aggregator and its named scorers (checksum addresses)."""
    return {Web3.to_checksum_address(context.ledger.sender), *context.ledger.scorers()}


def has_committee(context: ServiceContext) -> bool:
    return bool(context.ledger.scorers())


def outcome_dict(new_model_sha: str, participants: Sequence[str], scores: Sequence[int]) -> dict[str, Any]:
    """An outcome in the one form it is stored and compared in (hash as bare hex, scores as decimal strings)."""
    return {"new_model_hash": new_model_sha.removeprefix("0x").lower(),
            "participants": [Web3.to_checksum_address(a) for a in participants],
            "scores": [str(int(s)) for s in scores]}


def own_outcome(context: ServiceContext, record: RoundState) -> dict[str, Any] | None:
    """The aggregator's outcome of a scored round (None before it is scored)."""
    if record.new_model_sha is None or record.step not in (RoundStep.SCORED, RoundStep.FINALIZED):
        return None
    participants, scores = context.ledger.outcome(record.round, record.fixed_point_scores)
    return outcome_dict(record.new_model_sha, participants, scores)


def matching_signatures(context: ServiceContext, record: RoundState, own: dict[str, Any]) -> list[bytes]:
    """Signatures of distinct members other than the aggregator over exactly ``own`` (each was checked to recover to
    its scorer when it arrived)."""
    scorers = set(context.ledger.scorers())
    return [a.signature for a in context.state.attestations(record.round) if a.scorer in scorers and a.outcome == own]


def check_attestation(context: ServiceContext, number: int, body: AttestationBody) -> dict[str, Any]:
    """The attested outcome, once its signature recovers to the claimed scorer and the scorer sits on the committee.

    Raises
    ------
    Rejected
        ``bad_signature`` (does not recover to ``body.scorer``), ``not_scorer`` (not a named scorer).
    """
    outcome = outcome_dict(body.outcome.new_model_hash, body.outcome.participants,
                           [int(s) for s in body.outcome.scores])
    try:
        signer = recover_outcome_signer(
            bytes.fromhex(body.signature[2:]), chain_id=context.ledger.chain_id, contract=context.ledger.address,
            bounty_id=context.bounty_id, round_=number, new_model_hash=bytes.fromhex(outcome["new_model_hash"]),
            participants=outcome["participants"], scores=[int(s) for s in outcome["scores"]])
    except DataError as exc:
        raise Rejected(Code.BAD_SIGNATURE, f"attestation signature: {exc}") from None
    if signer != body.scorer:
        raise Rejected(Code.BAD_SIGNATURE, f"the attestation is signed by {signer}, not by {body.scorer}")
    if signer not in context.ledger.scorers():
        raise Rejected(Code.NOT_SCORER, f"{signer} is not a scorer of bounty {context.bounty_id}")
    return outcome


def authorize_fetch(context: ServiceContext, record: RoundState | None, number: int, item: str,
                    signature: str | None, issued_at: str | None, *, now: float | None = None) -> str:
    """The member asking for ``item`` of round ``number``, if it may have it now.

    Raises
    ------
    Rejected
        ``unsigned`` / ``bad_signature`` (no, malformed, stale or foreign signature), ``not_scorer`` (the signer is
        not on the committee), ``not_found`` (unknown round), ``round_open`` (its commit window has not closed on
        chain, or the aggregator still accepts uploads).
    """
    if not signature or not issued_at:
        raise Rejected(Code.UNSIGNED, "sign the request as a committee member (X-Scorer-Signature, X-Scorer-Time)")
    try:
        when = int(issued_at)
    except ValueError:
        raise Rejected(Code.BAD_SIGNATURE, "X-Scorer-Time is not unix seconds") from None
    now = time.time() if now is None else now
    if abs(now - when) > FETCH_MAX_AGE:
        raise Rejected(Code.BAD_SIGNATURE, f"the request was signed at {when}, more than {FETCH_MAX_AGE} s from now")
    try:
        signer = recover_fetch_signer(signature, chain_id=context.ledger.chain_id, contract=context.ledger.address,
                                      bounty_id=context.bounty_id, round_=number, item=item, issued_at=when)
    except DataError as exc:
        raise Rejected(Code.BAD_SIGNATURE, str(exc)) from None
    if signer not in members(context):
        raise Rejected(Code.NOT_SCORER, f"{signer} is not on bounty {context.bounty_id}'s scoring committee")
    if record is None:
        raise Rejected(Code.NOT_FOUND, f"round {number} is not known to this aggregator")
    if record.step in (RoundStep.OPENING, RoundStep.OPEN) or record.commit_deadline is None \
            or context.now() <= record.commit_deadline:
        raise Rejected(Code.ROUND_OPEN, f"round {number}'s updates are sealed until its commit window closes")
    return signer
