"""Who is invited to a round: every eligible institution, or K of them sampled by reputation.

Eligible means registered, not leaving, and with at least the bounty's minimum reputation (the contract
refuses commitments from anyone else anyway). Sampling is without replacement with probability
proportional to ``reputation + 1`` (basis points; the +1 keeps a zero-reputation institution in the draw)
from a generator seeded with :func:`fedcore.seeds.selection_seed`, over candidates sorted by
address: the same chain state and seed give the same invitation list on every machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from fedcore.seeds import selection_seed
from ledger.client import Institution


def eligible(institutions: Iterable[Institution], min_reputation: int) -> dict[str, int]:
    """``{address: reputation}`` of institutions that may commit to a bounty with ``min_reputation``."""
    return {
        inst.address: int(inst.reputation)
        for inst in institutions
        if inst.registered and inst.leave_requested_at == 0 and inst.reputation >= min_reputation
    }


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
