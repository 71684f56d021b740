"""What an institution commits on chain: its update's sha256 bound to itself and to the round.

A bare update hash is public once mined: anyone could commit the same 32 bytes and claim the update (or make
two identical commitments that get both dropped). The value committed is instead::

    commitment = sha256(DOMAIN || uint256(chain_id) || address(contract) || uint256(bounty_id)
                        || uint256(round) || address(institution) || update_sha256)

with ``DOMAIN = b"fedledger-commitment-v1"`` (23 bytes), each ``uint256`` as 32 big-endian bytes, each ``address``
as its 20 raw bytes and ``update_sha256`` as 32 raw bytes (179 bytes in all, fixed width, so no two inputs
share an encoding). Copying someone's commitment therefore commits to *their* address: an upload from the
copier can never match it, and the victim's own upload still does. The contract stores the 32 bytes as an
opaque ``bytes32``. Node, aggregator and auditor all compute it with :func:`bind_commitment`.

An institution commits either on chain itself (``commitUpdate``) or by signing its commitment (EIP-712
``Commitment``, :data:`COMMITMENT_TYPES`, :func:`sign_commitment`) and handing the signature over with its upload;
the aggregator then posts all of a round's signed commitments in one transaction (``commitUpdatesSigned``). The
contract accepts either, under the same rules: the signed struct carries the declared cumulative epsilon too
(millionths, 0 on a bounty without a privacy budget), so a batch is held to the bounty's budget exactly as a
commitment of one's own is, and no one can change the declaration without breaking the signature.
"""

from __future__ import annotations

import hashlib

from web3 import Web3

from fedcore.errors import DataError
from fedcore.signing import eip712_domain, recover_typed, sign_typed

DOMAIN = b"fedledger-commitment-v1"
_UINT256_MAX = 2**256 - 1


def bind_commitment(*, chain_id: int, contract: str, bounty_id: int, round_: int, institution: str,
                    update_sha256: bytes) -> bytes:
    """The 32-byte commitment of ``institution`` to the update hashing to ``update_sha256`` (see the module doc).

    Raises
    ------
    DataError
        When a number is out of ``uint256`` range, an address is malformed or the hash is not 32 bytes.
    """
    update_sha256 = bytes(update_sha256)
    if len(update_sha256) != 32:
        raise DataError(f"an update hash is 32 bytes, got {len(update_sha256)}")
    parts = [DOMAIN]
    for name, value in (("chain id", chain_id), ("bounty id", bounty_id), ("round", round_)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _UINT256_MAX:
            raise DataError(f"a commitment's {name} must be a uint256, got {value!r}")
        parts.append(value.to_bytes(32, "big"))
    parts.insert(2, _address_bytes(contract, "contract"))
    parts.append(_address_bytes(institution, "institution"))
    parts.append(update_sha256)
    return hashlib.sha256(b"".join(parts)).digest()


#: The EIP-712 ``Commitment`` struct (``COMMITMENT_TYPEHASH`` in RoundLedger.sol must hash :func:`commitment_type`).
COMMITMENT_TYPES = {"Commitment": [
    {"name": "bountyId", "type": "uint256"}, {"name": "round", "type": "uint256"},
    {"name": "updateHash", "type": "bytes32"}, {"name": "sampleCount", "type": "uint64"},
    {"name": "declaredEpsilon", "type": "uint64"},
]}


def commitment_type() -> str:
    """The EIP-712 type string of :data:`COMMITMENT_TYPES`, e.g. ``Commitment(uint256 bountyId,...)``."""
    fields = ",".join(f"{f['type']} {f['name']}" for f in COMMITMENT_TYPES["Commitment"])
    return f"Commitment({fields})"


def sign_commitment(account, *, chain_id: int, contract: str, bounty_id: int, round_: int, commitment: bytes,
                    sample_count: int, declared_epsilon: int) -> bytes:
    """An institution's EIP-712 signature (65 bytes) over its bound ``commitment`` (:func:`bind_commitment`), sample
    count and declared cumulative epsilon (millionths, ``ledger.client.epsilon_units``; 0 without a privacy
    budget), which anyone may post on chain for it in a batch (``commitUpdatesSigned``)."""
    return sign_typed(account, eip712_domain(chain_id, contract), COMMITMENT_TYPES, "Commitment",
                      _commitment_message(bounty_id, round_, commitment, sample_count, declared_epsilon))


def recover_commitment_signer(signature: bytes, *, chain_id: int, contract: str, bounty_id: int, round_: int,
                              commitment: bytes, sample_count: int, declared_epsilon: int) -> str:
    """Who signed this commitment (checksum address), as the contract will recover it; DataError if malformed."""
    return recover_typed(signature, eip712_domain(chain_id, contract), COMMITMENT_TYPES, "Commitment",
                         _commitment_message(bounty_id, round_, commitment, sample_count, declared_epsilon))


def _commitment_message(bounty_id: int, round_: int, commitment: bytes, sample_count: int,
                        declared_epsilon: int) -> dict:
    if len(bytes(commitment)) != 32:
        raise DataError(f"a commitment is 32 bytes, got {len(bytes(commitment))}")
    return {"bountyId": int(bounty_id), "round": int(round_), "updateHash": bytes(commitment),
            "sampleCount": int(sample_count), "declaredEpsilon": int(declared_epsilon)}


def _address_bytes(address: str, what: str) -> bytes:
    if not isinstance(address, str) or not Web3.is_address(address):
        raise DataError(f"a commitment's {what} must be an address, got {address!r}")
    return bytes.fromhex(Web3.to_checksum_address(address)[2:])
