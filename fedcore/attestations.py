"""What a scorer signs to attest a round's outcome, shared by aggregator, scorer and auditor.

A bounty's scoring committee (its aggregator plus the scorers the sponsor named) finalizes a round only with a
quorum of matching attestations: EIP-712 signatures over

    Outcome(uint256 bountyId,uint256 round,bytes32 newModelHash,address[] participants,int256[] scores)

under the ledger's domain (:func:`fedcore.signing.eip712_domain`), with the participants in the order the contract
takes them (ascending committed update hash) and their fixed-point scores. The domain binds chain and contract,
the struct binds bounty and round: an attestation cannot be replayed anywhere else.

A committee member asks the aggregator for a round's updates with an EIP-191 signature over
``fedledger-committee-fetch:<chain>:<contract>:<bounty>:<round>:<item>:<unix time>`` (:func:`sign_fetch`), ``item``
being ``list`` or an update's sha256: the aggregator serves members only, and only recent requests.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from fedcore.errors import DataError
from fedcore.signing import eip712_domain, recover_typed, sign_typed

FETCH_PREFIX = "fedledger-committee-fetch"

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


def fetch_message(*, chain_id: int, contract: str, bounty_id: int, round_: int, item: str, issued_at: int) -> str:
    """The text a committee member signs to fetch ``item`` (``list`` or an update's bare sha256) of a round."""
    return (f"{FETCH_PREFIX}:{int(chain_id)}:{Web3.to_checksum_address(contract)}:{int(bounty_id)}:{int(round_)}:"
            f"{item}:{int(issued_at)}")


def sign_fetch(account, **fields) -> str:
    """A committee member's request signature (0x hex) over :func:`fetch_message` of ``fields``."""
    return "0x" + bytes(account.sign_message(encode_defunct(text=fetch_message(**fields))).signature).hex()


def recover_fetch_signer(signature: str, **fields) -> str:
    """Who signed this request (checksum address); DataError if the signature is malformed."""
    try:
        return Account.recover_message(encode_defunct(text=fetch_message(**fields)), signature=signature)
    except Exception as exc:  # eth-account raises several types for malformed signatures
        raise DataError(f"malformed signature: {exc}".splitlines()[0]) from None
