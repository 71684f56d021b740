"""Session-wide fixtures: one Ganache process for the whole run, and fresh embedded chains."""

import shutil

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "ganache: runs against a Ganache process started by the test session")


@pytest.fixture(scope="session")
def ganache():
    """One Ganache for the session (shared state: do not assume fresh blocks or nonces).

    Skipped only when Node.js is absent; any other start failure is an error, so CI runs it.
    """
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: Ganache tests need it")
    from ledger.ganache import start_ganache

    handle = start_ganache()
    yield handle
    handle.stop()


@pytest.fixture
def embedded_w3():
    """A new, empty in-process eth-tester chain (10 unlocked accounts)."""
    from ledger.chain import connect

    return connect("embedded")


# The FedLedger world (deployed contracts, named accounts) for contract, ledger and audit tests.
from tests.world import chain, joined, world  # noqa: E402,F401
