"""Chain backends: connecting, sending, time travel, funding — on eth-tester, Ganache and Anvil."""

import pytest
from eth_account import Account
from web3 import Web3

from fedcore.errors import ChainError
from ledger.chain import (
    advance_time,
    call,
    connect,
    fund_account,
    is_embedded,
    latest_timestamp,
    mine,
    send_transaction,
)
from ledger.devchain import CHAIN_ID, deterministic_accounts, free_port, start_chain


def test_each_embedded_connect_is_a_new_chain():
    a, b = connect(), connect("embedded")
    assert is_embedded(a) and a.eth.block_number == 0
    a.eth.send_transaction({"from": a.eth.accounts[0], "to": a.eth.accounts[1], "value": 1})
    assert a.eth.block_number == 1 and b.eth.block_number == 0


def test_nothing_listening_is_one_clear_chain_error():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainError, match=r"no chain answers at http://127\.0\.0\.1:\d+ \(start one with `fedledger chain up`\)"):
        connect(url)
    with pytest.raises(ChainError, match="unsupported chain URL"):
        connect("ws://localhost:8545")


def test_dev_chains_are_deterministic_and_alike(rpc_chain):
    """Ganache and Anvil: the same chain id and the same accounts (the README's keys hold on either engine)."""
    w3 = connect(rpc_chain.url)
    assert w3.eth.chain_id == CHAIN_ID
    assert w3.eth.accounts[:3] == [a.address for a in deterministic_accounts(3)]
    assert rpc_chain.accounts[0].address == "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1"
    assert w3.eth.get_balance(rpc_chain.accounts[9].address) > 0


def test_an_unknown_engine_is_one_clear_chain_error():
    with pytest.raises(ChainError, match="unknown chain engine 'hardhat': use one of ganache, anvil"):
        start_chain("hardhat")


def test_a_taken_port_is_refused_before_starting(rpc_chain):
    with pytest.raises(ChainError, match=f"something already answers at {rpc_chain.url}"):
        start_chain(rpc_chain.engine, rpc_chain.port)


def test_advance_time_and_mine(backend):
    w3 = backend.w3
    before, block = latest_timestamp(w3), w3.eth.block_number
    after = advance_time(w3, 3600)
    assert after >= before + 3600 and after == latest_timestamp(w3)
    assert w3.eth.block_number == block + 1
    mine(w3, 2)
    assert w3.eth.block_number == block + 3 and latest_timestamp(w3) >= after
    assert advance_time(w3, 0) >= after  # zero seconds still mines
    assert latest_timestamp(w3) == w3.eth.get_block("latest")["timestamp"]  # the embedded chain reads its header


def test_time_lock_opens_after_advance(backend, probe):
    with pytest.raises(ChainError):
        call(probe.functions.unlock(1))
    advance_time(backend.w3, 3601)
    assert call(probe.functions.unlock(1)) is True


@pytest.mark.parametrize("sender", ["node", "local"])
def test_send_transaction_both_ways(backend, probe, sender):
    who = backend.node_sender if sender == "node" else backend.local
    receipt = send_transaction(backend.w3, probe.functions.store(3, 9, "ok"), who)
    assert receipt["status"] == 1
    assert probe.functions.values(3).call() == 9
    frm = who if isinstance(who, str) else who.address
    assert backend.w3.eth.get_transaction(receipt["transactionHash"])["from"] == frm

    receipt = send_transaction(backend.w3, probe.functions.deposit(), who, value=12345)
    assert receipt["status"] == 1 and backend.w3.eth.get_balance(probe.address) == 12345


def test_fund_account_and_spend(backend, probe):
    fresh = Account.create()
    fund_account(backend.w3, fresh.address, Web3.to_wei(1, "ether"))
    assert backend.w3.eth.get_balance(fresh.address) == Web3.to_wei(1, "ether")
    send_transaction(backend.w3, probe.functions.store(4, 1, ""), fresh)
    assert probe.functions.values(4).call() == 1


def test_unfunded_sender_is_a_chain_error_not_a_revert(backend, probe):
    broke = Account.create()
    with pytest.raises(ChainError) as info:
        send_transaction(backend.w3, probe.functions.deposit(), broke, value=10**18)
    assert type(info.value) is ChainError
    assert "\n" not in str(info.value)


def test_a_json_rpc_connection_asks_the_chain_id_once(rpc_chain):
    """web3 validates every call and transaction against the chain id: one round trip each unless it is cached."""
    w3 = connect(rpc_chain.url)
    asked = []
    original = w3.provider._make_request

    def counting(method, params):
        asked.append(method)
        return original(method, params)

    w3.provider._make_request = counting

    def calls(n: int) -> None:
        for _ in range(n):
            assert w3.eth.chain_id == CHAIN_ID
            w3.eth.call({"to": w3.eth.accounts[0], "data": "0x"})

    calls(1)
    first = asked.count("eth_chainId")
    calls(3)
    assert asked.count("eth_chainId") == first <= 2 and asked.count("eth_call") == 4
