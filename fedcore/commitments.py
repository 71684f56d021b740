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
"""

from __future__ import annotations

import hashlib

from web3 import Web3

from fedcore.errors import DataError

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


def _address_bytes(address: str, what: str) -> bytes:
    if not isinstance(address, str) or not Web3.is_address(address):
        raise DataError(f"a commitment's {what} must be an address, got {address!r}")
    return bytes.fromhex(Web3.to_checksum_address(address)[2:])
