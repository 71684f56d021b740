"""Upload signatures bind chain, contract, bounty, round and hash."""

import pytest
from eth_account import Account

from fedcore.errors import DataError
from fedcore.signing import recover_upload_signer, sign_upload, upload_message

LEDGER = "0x" + "ab" * 20
DIGEST = bytes(range(32))


def test_signer_is_recovered():
    account = Account.from_key("0x" + "11" * 32)
    signature = sign_upload(account, 1337, LEDGER, 1, 2, DIGEST)
    assert recover_upload_signer(signature, 1337, LEDGER, 1, 2, DIGEST) == account.address


@pytest.mark.parametrize("change", [(1, LEDGER, 1, 2, DIGEST), (1337, "0x" + "cd" * 20, 1, 2, DIGEST),
                                    (1337, LEDGER, 9, 2, DIGEST), (1337, LEDGER, 1, 3, DIGEST),
                                    (1337, LEDGER, 1, 2, bytes(32))])
def test_a_signature_does_not_transfer_to_other_fields(change):
    account = Account.from_key("0x" + "11" * 32)
    signature = sign_upload(account, 1337, LEDGER, 1, 2, DIGEST)
    assert recover_upload_signer(signature, *change) != account.address


def test_malformed_inputs_are_clear_errors():
    with pytest.raises(DataError, match="malformed signature"):
        recover_upload_signer("0x1234", 1337, LEDGER, 1, 2, DIGEST)
    with pytest.raises(DataError, match="32 bytes"):
        upload_message(1337, LEDGER, 1, 2, b"short")
