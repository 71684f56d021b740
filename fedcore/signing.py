"""What institutions and scorers sign, shared by node, aggregator, scorer and auditor.

An upload's message binds the chain, the ledger contract, the bounty, the round and the update's sha256, so a
signature cannot be replayed on another chain, deployment, bounty or round, nor for other bytes. It is signed
as an EIP-191 personal message, which any Ethereum wallet can produce.

What the contract itself verifies (a signed commitment, a scorer's attestation) is EIP-712 typed data under the
ledger's domain (:func:`eip712_domain`: name ``FedLedger``, version ``1``, chain id, contract address).
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from web3 import Web3

from fedcore.errors import DataError

PREFIX = "fedledger-update"
EIP712_NAME = "FedLedger"
EIP712_VERSION = "1"


def upload_message(chain_id: int, ledger_address: str, bounty_id: int, round_: int, update_sha256: bytes) -> str:
    """The exact text signed for an upload, e.g. ``fedledger-update:1337:0xAbC…:1:2:0x9f…``."""
    if len(update_sha256) != 32:
        raise DataError(f"an update hash is 32 bytes, got {len(update_sha256)}")
    contract = Web3.to_checksum_address(ledger_address)
    return f"{PREFIX}:{chain_id}:{contract}:{bounty_id}:{round_}:0x{bytes(update_sha256).hex()}"


def sign_upload(account, chain_id: int, ledger_address: str, bounty_id: int, round_: int, update_sha256: bytes) -> str:
    """Sign an upload with a local account; returns the 65-byte signature as 0x hex."""
    message = encode_defunct(text=upload_message(chain_id, ledger_address, bounty_id, round_, update_sha256))
    return "0x" + bytes(account.sign_message(message).signature).hex()


def recover_upload_signer(signature: str, chain_id: int, ledger_address: str, bounty_id: int, round_: int,
                          update_sha256: bytes) -> str:
    """The checksum address that signed this upload; DataError if the signature is malformed."""
    message = encode_defunct(text=upload_message(chain_id, ledger_address, bounty_id, round_, update_sha256))
    try:
        return Account.recover_message(message, signature=signature)
    except Exception as exc:  # eth-account raises several types for malformed signatures
        raise DataError(f"malformed signature: {exc}".splitlines()[0]) from None


def eip712_domain(chain_id: int, ledger_address: str) -> dict:
    """The ledger contract's EIP-712 domain (it must match ``EIP712("FedLedger", "1")`` in FedLedger.sol)."""
    return {"name": EIP712_NAME, "version": EIP712_VERSION, "chainId": int(chain_id),
            "verifyingContract": Web3.to_checksum_address(ledger_address)}


def sign_typed(account, domain: dict, types: dict, primary: str, message: dict) -> bytes:
    """Sign EIP-712 typed data with a local account; returns the 65-byte signature (r, s, v)."""
    return bytes(account.sign_message(_typed(domain, types, primary, message)).signature)


def recover_typed(signature: bytes, domain: dict, types: dict, primary: str, message: dict) -> str:
    """The checksum address that signed this EIP-712 typed data; DataError if the signature is malformed."""
    try:
        return Account.recover_message(_typed(domain, types, primary, message), signature=bytes(signature))
    except Exception as exc:  # eth-account raises several types for malformed signatures
        raise DataError(f"malformed signature: {exc}".splitlines()[0]) from None


def compact_signature(signature: bytes) -> tuple[bytes, bytes]:
    """A 65-byte (r, s, v) signature as EIP-2098's (r, vs): the form a batch carries (one word less per entry)."""
    signature = bytes(signature)
    if len(signature) != 65:
        raise DataError(f"a signature is 65 bytes, got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise DataError(f"a signature's v is 27 or 28, got {v}")
    s = int.from_bytes(signature[32:64], "big") | ((v - 27) << 255)
    return signature[:32], s.to_bytes(32, "big")


def _typed(domain: dict, types: dict, primary: str, message: dict):
    return encode_typed_data(full_message={"types": {"EIP712Domain": _DOMAIN_TYPE, **types}, "domain": domain,
                                           "primaryType": primary, "message": message})


_DOMAIN_TYPE = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}]
