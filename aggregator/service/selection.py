"""Who is invited to a round: every eligible institution, or K of them sampled by reputation.

Eligible means that the contract would take the institution's commitment (registered, not leaving, staking at
least the ledger's minimum stake, with at least the bounty's minimum reputation:
:func:`aggregator.service.eligibility.commit_refusal`), and not idle: an
institution invited to an earlier round of the bounty that ended without its accepted upload is not invited
again in that bounty, so an idle invitee holds up at most one round, for at most one commit window. Only invited
institutions' uploads are accepted, counted for closing and used: a round closes when every invitee has uploaded,
or when its commit window ends, never on the first N uploads, so registered bots cannot crowd invitees out by
being fast. Sampling is without replacement with probability
proportional to ``reputation + 1`` (basis points; the +1 keeps a zero-reputation institution in the draw)
from a generator seeded with :func:`fedcore.seeds.selection_seed`, over candidates sorted by
address: the same chain state and seed give the same invitation list on every machine.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import numpy as np

from aggregator.service.eligibility import CommitRule, commit_refusal
from fedcore.seeds import selection_seed
from ledger.client import Institution


def eligible(institutions: Iterable[Institution], *, min_reputation: int, min_stake: int,
             idle: Collection[str] = ()) -> dict[str, int]:
    """``{address: reputation}`` of institutions that may be invited to a bounty with ``min_reputation``.

    Parameters
    ----------
    institutions : the ledger's records
    min_reputation : the bounty's minimum reputation (basis points)
    min_stake : the ledger's minimum stake (wei): an institution slashed below it cannot commit
    idle : addresses left out (see :func:`idle_invitees`)
    """
    left_out = {a.lower() for a in idle}
    rule = CommitRule(min_stake=min_stake, min_reputation=min_reputation)
    return {
        inst.address: int(inst.reputation)
        for inst in institutions
        if commit_refusal(inst, rule) is None and inst.address.lower() not in left_out
    }


def idle_invitees(past_rounds: Iterable[tuple[Collection[str], Collection[str]]]) -> set[str]:
    """Addresses (lower case) invited to a past round of the bounty that ended without their accepted upload.

    Parameters
    ----------
    past_rounds : iterable of (invited, uploaded)
        Per earlier round: the invitation list and the institutions whose upload was accepted.
    """
    idle: set[str] = set()
    for invited, uploaded in past_rounds:
        idle |= {a.lower() for a in invited} - {a.lower() for a in uploaded}
    return idle


def select_clients(candidates: Mapping[str, int], *, mode: str, k: int | None, seed: int, bounty_id: int,
                   round_: int) -> list[str]:
    """The sorted list of invited addresses.

    Parameters
    ----------
    candidates : address -> reputation
    mode : "all" or "reputation"
    k : int, optional
        Institutions to invite with ``"reputation"`` (all of them when there are no more than ``k``).
    seed, bounty_id, round_ : int
        The draw's seed is derived from all three.
    """
    addresses = sorted(candidates)
    if mode == "all" or k is None or len(addresses) <= k:
        return addresses
    if mode != "reputation":
        raise ValueError(f"unknown selection mode {mode!r}")
    weights = np.asarray([candidates[a] + 1 for a in addresses], dtype=np.float64)
    rng = np.random.default_rng(selection_seed(seed, bounty_id, round_))
    chosen = rng.choice(len(addresses), size=k, replace=False, p=weights / weights.sum())
    return sorted(addresses[int(i)] for i in chosen)
