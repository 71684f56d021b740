"""A scripted bounty on a dev chain's unlocked accounts, for trying the ledger before any training runs.

The scores are made up (no model is trained): it exists so that ``fedledger audit trace`` has something to
show right after ``fedledger chain up`` and ``fedledger deploy``, and so tests can replay a known story.
"""

from __future__ import annotations

import hashlib

from ledger.chain import latest_timestamp
from ledger.client import BountyParams, FedLedgerClient

ONE_ETH = 10**18
# Per round, made-up fixed-point scores of the four institutions (index into the institutions list).
SCORES = ({0: 3, 1: 1}, {0: 1, 1: -1})


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def scripted_bounty(ledger: FedLedgerClient, *, sponsor: str, aggregator: str, funder: str,
                    institutions: list[str]) -> int:
    """Join the institutions not yet registered, fund a 2-round ETH bounty, top it up, run both rounds with
    ``SCORES``, and claim once; returns the bounty's id."""
    stake = ledger.min_stake()
    for i, inst in enumerate(institutions):
        if not ledger.institution(inst).registered:
            ledger.as_sender(inst).join(f"example hospital {i}", "", stake=stake)
    params = BountyParams(task_spec_hash=_digest("example task"), validation_set_hash=_digest("example validation set"),
                          rules_hash=_digest("example scoring rules"), aggregator=aggregator,
                          num_rounds=len(SCORES), commit_window=600,
                          deadline=latest_timestamp(ledger.w3) + 30 * 86_400)
    bounty_id = ledger.as_sender(sponsor).create_bounty(params, ONE_ETH)
    ledger.as_sender(funder).fund_bounty(bounty_id, ONE_ETH)
    agg = ledger.as_sender(aggregator)
    model = _digest("example model 0")
    for number, scores in enumerate(SCORES, start=1):
        round_ = agg.open_round(bounty_id, model)
        for i in scores:
            ledger.as_sender(institutions[i]).commit_update(
                bounty_id, round_, _digest(f"bounty {bounty_id} round {round_} update {i}"), 100)
        model = _digest(f"bounty {bounty_id} model {number}")
        agg.finalize_round(bounty_id, round_, model, {institutions[i]: s for i, s in scores.items()})
    ledger.as_sender(institutions[0]).claim(bounty_id)
    return bounty_id
