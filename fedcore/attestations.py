"""What a scorer signs to attest a round's outcome, shared by aggregator, scorer and auditor.

A bounty's scoring committee (its aggregator plus the scorers the sponsor named) finalizes a round only with a
quorum of matching attestations: EIP-712 signatures over

    Outcome(uint256 bountyId,uint256 round,bytes32 newModelHash,address[] participants,int256[] scores)

under the ledger's domain (:func:`fedcore.signing.eip712_domain`), with the participants in the order the contract
takes them (ascending committed update hash) and their fixed-point scores. The domain binds chain and contract,
the struct binds bounty and round: an attestation cannot be replayed anywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedcore.signing import eip712_domain, recover_typed, sign_typed

OUTCOME_TYPES = {"Outcome": [
    {"name": "bountyId", "type": "uint256"}, {"name": "round", "type": "uint256"},
    {"name": "newModelHash", "type": "bytes32"}, {"name": "participants", "type": "address[]"},
    {"name": "scores", "type": "int256[]"},
]}


def sign_outcome(account, *, chain_id: int, contract: str, bounty_id: int, round_: int, new_model_hash: bytes,
                 participants: Sequence[str], scores: Sequence[int]) -> bytes:
    """A committee member's 65-byte attestation of a round's outcome (participants in the contract's order)."""
    return sign_typed(account, eip712_domain(chain_id, contract), OUTCOME_TYPES, "Outcome",
                      _message(bounty_id, round_, new_model_hash, participants, scores))


def recover_outcome_signer(signature: bytes, *, chain_id: int, contract: str, bounty_id: int, round_: int,
                           new_model_hash: bytes, participants: Sequence[str], scores: Sequence[int]) -> str:
    """Who attested this outcome (checksum address), as the contract recovers it; DataError if malformed."""
    return recover_typed(signature, eip712_domain(chain_id, contract), OUTCOME_TYPES, "Outcome",
                         _message(bounty_id, round_, new_model_hash, participants, scores))


def _message(bounty_id: int, round_: int, new_model_hash: bytes, participants: Sequence[str],
             scores: Sequence[int]) -> dict:
    return {"bountyId": int(bounty_id), "round": int(round_), "newModelHash": bytes(new_model_hash),
            "participants": list(participants), "scores": [int(s) for s in scores]}
