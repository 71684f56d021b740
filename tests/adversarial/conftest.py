"""The attack suite: real processes (Ganache, ``fedledger aggregator serve``, honest ``fedledger node train``) and
attacker processes that are registered institutions. Each test reproduces one attack and asserts that the attacker
gains nothing, the honest institutions are paid as without it, the bounty completes and ``audit verify
--recompute`` passes.

The federation set-up (one Ganache per module, deployment, Heart files, keystores, joined hospitals, ``mallory``
registered) is the end-to-end suite's, shared from ``tests/e2e/conftest.py``.
"""

from tests.e2e.conftest import chain_engine, federation, procs, pytest_runtest_makereport  # noqa: F401
