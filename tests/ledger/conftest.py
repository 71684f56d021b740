"""Fixtures for the ledger tests: the helper contracts of tests/ledger/sol and a chain per backend."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.chain import connect, fund_account
from ledger.compile import ROOT, compile_sources
from ledger.deployment import deploy
from tests.world import RPC_ENGINES

SOL = Path(__file__).parent / "sol"


@pytest.fixture(scope="session")
def sol_artifacts():
    """Artifacts of tests/ledger/sol/*.sol, compiled once per session."""
    return compile_sources(sorted(SOL.glob("*.sol")), base=ROOT)


@dataclass
class Backend:
    name: str
    w3: Web3
    node_sender: str  # an account the node holds unlocked (eth_sendTransaction)
    local: LocalAccount  # a funded account signed here (eth_sendRawTransaction)


@pytest.fixture(params=["embedded", *RPC_ENGINES])
def backend(request):
    """The same test on a fresh embedded chain and on the session's Ganache and Anvil."""
    if request.param == "embedded":
        w3 = connect("embedded")
        local = Account.from_key("0x" + "42" * 32)
        fund_account(w3, local.address, Web3.to_wei(100, "ether"))
    else:
        dev_chain = request.getfixturevalue(request.param)
        w3 = connect(dev_chain.url)
        local = dev_chain.accounts[1]
    return Backend(request.param, w3, w3.eth.accounts[0], local)


@pytest.fixture
def probe(backend, sol_artifacts):
    """A fresh Probe(limit=10, lock=1 hour) on ``backend``, as a web3 contract."""
    artifact = sol_artifacts["Probe"]
    address, _ = deploy(backend.w3, "Probe", 10, 3600, sender=backend.node_sender, artifact=artifact)
    return backend.w3.eth.contract(address=address, abi=artifact["abi"])

