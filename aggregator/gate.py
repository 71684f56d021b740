"""The contribution gate: a round's contribution estimate decides which updates enter its aggregate (pure).

The round's scores are taken on every admitted update before the aggregate (:func:`aggregator.rounds.compute_round`).
With the bounty's rules (:class:`fedcore.rules.RoundRules`, fixed on chain before anyone trains):

- **harmful**: an update whose value is below ``-(harm_spread x std_error + harm_margin)`` is left out of the
  aggregate. Its score still goes on chain (it is negative, so the contract credits it nothing). With
  ``row_spread`` the std error is ``sqrt(sampling**2 + rows**2)``: the estimator's and the value's own standard error
  over the sponsor's validation rows (:func:`harm_spread`), so an exact estimator has a spread too.
- **gated**: an institution left out in ``gate_after`` consecutive rounds of the bounty is gated: from then on its
  update enters only in a round where its value is above ``+(harm_spread x std_error + harm_margin)``, positive value
  beyond the same spread; that round ends the gate.
- **nothing for what stays out**: the on-chain score of an update the gate left out is its score capped at 0
  (:func:`on_chain_scores`), so a gated update whose value is positive but within the spread is posted as 0 and
  credited nothing; its estimated value stays in ``RoundScores.values``.
- **no penalty for doubt** (``zero_within_spread``): a negative value within the same spread, not told apart from
  zero, is posted as 0. The contract credits a score of 0 nothing and moves no reputation with it, so reputation
  falls only for harm the gate would call harm; the estimated value stays in ``RoundScores.values``.
- **no pay without gain** (``pay_only_gain``): a round whose gain of what entered the model, ``v(kept) - v(empty)``
  (the number the values are normalized to), is not positive delivered nothing to the sponsor: every positive score
  is posted as 0, so the contract credits nobody and carries the reward; negative scores go on chain as above. (With
  GTG, ``|gain|`` below its ``round_truncation_threshold`` already makes every value 0; this rule covers the rest.)

The running record is one count per institution (consecutive rounds left out). It travels with the strategy's state
(keys ``gate/<institution>`` of :attr:`aggregator.rounds.RoundInputs.strategy_state`), so the coordinator stores it,
the simulation carries it and the auditor's replay, which recomputes every round in order from the chain's updates,
rebuilds it bit for bit. An institution absent from a round keeps its count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from aggregator.scoring import RoundScores
from fedcore.rules import RoundRules

#: Reason codes of the gate's exclusions (the start of each reason in ``RoundOutcome.excluded``).
HARMFUL = "harmful"
GATED = "gated"
#: Prefix of the gate's record in the round state.
STATE_PREFIX = "gate/"


@dataclass(frozen=True)
class GateDecision:
    """What the gate made of one round.

    Attributes
    ----------
    left_out : dict[str, str]
        Institution -> reason (``"harmful: ..."`` or ``"gated: ..."``), for updates kept out of the aggregate.
    record : dict[str, int]
        Consecutive rounds left out, per institution, after this round (zeros dropped).
    """

    left_out: dict[str, str]
    record: dict[str, int]


def split_state(state: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """A round state -> (the strategy's part, the gate's record)."""
    strategy = {k: v for k, v in state.items() if not k.startswith(STATE_PREFIX)}
    record = {k[len(STATE_PREFIX):]: int(np.asarray(v)) for k, v in state.items() if k.startswith(STATE_PREFIX)}
    return strategy, record


def join_state(strategy_state: Mapping[str, np.ndarray], record: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The round state carried to the next round: the strategy's state and the gate's non-zero counts."""
    out = dict(strategy_state)
    out.update({STATE_PREFIX + who: np.asarray(count, dtype=np.int64) for who, count in sorted(record.items())
                if count})
    return out


def decide(scores: RoundScores | None, record: Mapping[str, int], rules: RoundRules) -> GateDecision:
    """Which scored updates the gate keeps out of the round's aggregate, and the record after the round.

    Parameters
    ----------
    scores : RoundScores or None
        The round's scores of every admitted update (None: nothing scored, nothing gated).
    record : Mapping[str, int]
        Consecutive rounds each institution was left out, before this round.
    rules : RoundRules
        ``exclude_harmful``, ``harm_spread``, ``harm_margin``, ``gate_after``.

    Returns
    -------
    GateDecision
    """
    after = {who: int(n) for who, n in record.items() if n}
    if scores is None or not rules.exclude_harmful:
        return GateDecision({}, after)
    left_out: dict[str, str] = {}
    for who in sorted(scores.values):
        value, spread = scores.values[who], harm_spread(scores, who, rules)
        gated = rules.gate_after > 0 and after.get(who, 0) >= rules.gate_after
        if gated and not value > spread:
            left_out[who] = (f"{GATED}: left out of {after[who]} consecutive rounds; value {value:.6g} is not above "
                             f"+{spread:.6g} ({rules.harm_spread:g} std errors + margin {rules.harm_margin:g})")
        elif not gated and value < -spread:
            left_out[who] = (f"{HARMFUL}: value {value:.6g} below -{spread:.6g} ({rules.harm_spread:g} std errors + "
                             f"margin {rules.harm_margin:g})")
        if who in left_out:
            after[who] = after.get(who, 0) + 1
        else:
            after.pop(who, None)
    return GateDecision(left_out, after)


def harm_spread(scores: RoundScores, who: str, rules: RoundRules) -> float:
    """How far from zero ``who``'s value must lie to be told apart from zero: ``harm_spread x std error +
    harm_margin`` (utility units). With ``rules.row_spread`` the std error is ``sqrt(sampling**2 + rows**2)``: the
    estimator's and the validation rows' (:attr:`aggregator.scoring.RoundScores.row_std_errors`)."""
    error = scores.std_errors.get(who, 0.0)
    if rules.row_spread:
        error = math.hypot(error, scores.row_std_errors.get(who, 0.0))
    return rules.harm_spread * error + rules.harm_margin


def on_chain_scores(scores: RoundScores | None, left_out: Mapping[str, str], rules: RoundRules, *, gain: float
                    ) -> RoundScores | None:
    """``scores`` as they go on chain: an update the gate left out is capped at 0 (it earns nothing); with
    ``rules.pay_only_gain`` and a round ``gain`` (``v(kept) - v(empty)``, 0 when nothing was kept) that is not
    positive, every score is capped at 0 (nobody is paid); with ``rules.zero_within_spread``, a negative value within
    its spread (:func:`harm_spread`) is posted as 0 (it moves no reputation). ``values`` and ``std_errors`` stay the
    estimate's."""
    if scores is None:
        return None
    no_value = rules.pay_only_gain and not gain > 0

    def posted(who: str, score: int) -> int:
        if who in left_out or no_value:
            score = min(score, 0)
        if rules.zero_within_spread and score < 0 and scores.values[who] >= -harm_spread(scores, who, rules):
            return 0
        return score

    fixed = {who: posted(who, score) for who, score in scores.fixed_point.items()}
    return scores if fixed == dict(scores.fixed_point) else replace(scores, fixed_point=fixed)
