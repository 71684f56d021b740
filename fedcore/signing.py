"""What an institution signs when it uploads an update, shared by node and aggregator.

The message binds the chain, the ledger contract, the bounty, the round and the update's sha256, so a
signature cannot be replayed on another chain, deployment, bounty or round, nor for other bytes. It is signed
as an EIP-191 personal message, which any Ethereum wallet can produce.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from fedcore.errors import DataError

PREFIX = "fedledger-update"


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
