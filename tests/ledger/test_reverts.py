"""Reverts reach Python as ContractRevert(name, args) on both backends, by call and by transaction."""

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from fedcore.errors import ChainError, ContractRevert
from ledger.chain import call, send_transaction
from ledger.reverts import decode_revert, to_revert


def _revert_of(fn, *args, **kwargs) -> ContractRevert:
    with pytest.raises(ContractRevert) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("mode", ["call", "transact"])
def test_custom_error_with_arguments(backend, probe, mode):
    fn = probe.functions.store(7, 11, "too much")
    if mode == "call":
        revert = _revert_of(call, fn, backend.node_sender)
    else:
        revert = _revert_of(send_transaction, backend.w3, fn, backend.node_sender)
    assert revert.name == "TooLarge"
    assert revert.error_args == {"value": 11, "limit": 10}
    assert str(revert) == "contract reverted: TooLarge(value=11, limit=10)"
    assert isinstance(revert, ChainError)


def test_custom_error_with_address_and_small_uint(backend, probe):
    revert = _revert_of(send_transaction, backend.w3, probe.functions.unlock(5), backend.local)
    assert revert.name == "NotYet"
    assert revert.error_args["bountyId"] == 5
    assert revert.error_args["caller"] == backend.local.address  # checksummed
    assert revert.error_args["unlockAt"] == probe.functions.unlockAt().call()


@pytest.mark.parametrize("sender", ["node", "local"])
def test_error_without_arguments_on_payable(backend, probe, sender):
    who = backend.node_sender if sender == "node" else backend.local
    revert = _revert_of(send_transaction, backend.w3, probe.functions.deposit(), who, value=0)
    assert (revert.name, revert.error_args) == ("Empty", {})


def test_inherited_openzeppelin_error(backend, probe):
    revert = _revert_of(send_transaction, backend.w3, probe.functions.onlyOwnerThing(), backend.local)
    assert revert.name == "OwnableUnauthorizedAccount"
    assert revert.error_args == {"account": backend.local.address}


@pytest.mark.parametrize("mode", ["call", "transact"])
def test_require_string_panic_and_bare_revert(backend, probe, mode):
    def run(fn):
        if mode == "call":
            return _revert_of(call, fn, backend.node_sender)
        return _revert_of(send_transaction, backend.w3, fn, backend.node_sender)

    revert = run(probe.functions.failRequire())
    assert (revert.name, revert.error_args) == ("Error", {"reason": "plain reason"})
    assert str(revert) == "contract reverted: plain reason"
    revert = run(probe.functions.failPanic(0))
    assert (revert.name, revert.error_args) == ("Panic", {"code": 0x12})
    revert = run(probe.functions.failBare())
    assert (revert.name, revert.error_args) == ("Revert", {})


def test_revert_of_a_mined_transaction_is_replayed(backend, probe):
    # With an explicit gas limit nothing is estimated: the transaction is mined with status 0.
    revert = _revert_of(send_transaction, backend.w3, probe.functions.store(1, 99, ""), backend.local, gas=200_000)
    assert (revert.name, revert.error_args) == ("TooLarge", {"value": 99, "limit": 10})


def test_unknown_selector_without_the_abi(backend, probe):
    bare = backend.w3.eth.contract(address=probe.address, abi=[e for e in probe.abi if e["type"] != "error"])
    revert = _revert_of(call, bare.functions.store(1, 11, ""))
    assert revert.name == "UnknownError"
    selector = function_signature_to_4byte_selector("TooLarge(uint256,uint256)")
    assert revert.error_args == {"data": "0x" + (selector + encode(["uint256", "uint256"], [11, 10])).hex()}


def test_decode_revert_pure():
    abi = [{"type": "error", "name": "RoundClosed", "inputs": [
        {"name": "bountyId", "type": "uint256"}, {"name": "round", "type": "uint256"},
        {"name": "hash", "type": "bytes32"}, {"name": "who", "type": "address[]"}]}]
    data = function_signature_to_4byte_selector("RoundClosed(uint256,uint256,bytes32,address[])") + encode(
        ["uint256", "uint256", "bytes32", "address[]"], [2**255, 2, b"\x01" * 32, ["0x" + "ab" * 20]])
    revert = decode_revert(data, abi)
    assert revert.name == "RoundClosed"
    assert revert.error_args == {
        "bountyId": 2**255, "round": 2, "hash": "0x" + "01" * 32,
        "who": [to_checksum_address("0x" + "ab" * 20)],
    }
    assert decode_revert(b"\x12\x34\x56\x78", abi).error_args == {"data": "0x12345678"}
    assert decode_revert(data[:10], abi).name == "UnknownError"  # truncated arguments
    assert decode_revert("already decoded").error_args == {"reason": "already decoded"}


def test_non_reverts_are_not_mapped():
    assert to_revert(ConnectionError("refused")) is None
    assert to_revert(ValueError("bad")) is None
