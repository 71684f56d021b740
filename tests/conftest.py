"""Session-wide fixtures: one process per dev-chain engine (Ganache, Anvil) for the whole run, and fresh embedded
chains."""

import shutil

import pytest

from ledger.devchain import ANVIL, GANACHE
from tests.world import RPC_ENGINES


def _session_chain(engine: str):
    if engine == GANACHE and shutil.which("node") is None:
        pytest.skip("Node.js is not installed: Ganache tests need it")
    from ledger.devchain import start_chain

    return start_chain(engine)


@pytest.fixture(scope="session")
def ganache():
    """One Ganache for the session (shared state: do not assume fresh blocks or nonces).

    Skipped only when Node.js is absent; any other start failure is an error, so CI runs it.
    """
    handle = _session_chain(GANACHE)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def anvil():
    """One Anvil for the session (shared state, as ``ganache``); a start failure is an error, so CI runs it."""
    handle = _session_chain(ANVIL)
    yield handle
    handle.stop()


@pytest.fixture(params=RPC_ENGINES)
def rpc_chain(request):
    """The session's Ganache, then the session's Anvil (a ``DevChain``: ``.url``, ``.accounts``, ``.engine``)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def embedded_w3():
    """A new, empty in-process eth-tester chain (10 unlocked accounts)."""
    from ledger.chain import connect

    return connect("embedded")


# The FedLedger world (deployed contracts, named accounts) for contract, ledger and audit tests.
from tests.world import chain, joined, world  # noqa: E402,F401
