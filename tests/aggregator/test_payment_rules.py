"""Payment rules that cannot pay harm: from contribution estimates to on-chain credits.

The path under test is the one every round takes: an estimate's values are normalized towards the round's
total (:func:`aggregator.shapley.normalize_to_total`), turned into the chain's fixed point
(:func:`aggregator.shapley.to_fixed_point`), made the posted scores by the bounty's rules
(:func:`aggregator.gate.on_chain_scores`), and posted with ``finalizeRound``, whose contract credits the round's
reward in proportion to the positive scores. Properties, over random value vectors and random sequences of rounds
(the chain part on the real EVM, eth-tester):

* normalization never moves a value across zero, and all zeros stay all zeros whatever the total;
* nobody whose estimate is not positive is credited, and nobody at all in a round whose gain is not positive;
* each round is credited exactly (the last round to the wei; earlier ones but for floor-division dust, under one
  wei per positive scorer, which the next round's reward carries) or, with no positive value, carried whole: its
  reward stays in escrow for the rounds left, and after the last round the sponsor takes back what no round credited.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aggregator import gate
from aggregator.rules import resolve_rules
from aggregator.scoring import RoundScores
from aggregator.shapley import gtg_shapley, normalize_estimate, normalize_to_total, to_fixed_point
from fedcore.rules import FIXED_POINT_SCALE
from ledger.chain import connect
from ledger.client import FedLedgerClient
from ledger.deployment import deploy_fedledger
from tests.world import COOLDOWN, MIN_STAKE, ONE_ETH, World, h

N_INSTS = 4

VALUE = st.one_of(
    st.sampled_from([0.0, 0.0, 1e-19, -1e-19, 1e-4, -1e-4, 0.02, -0.02]),
    st.floats(-0.1, 0.1, allow_nan=False, allow_subnormal=True),
)
VALUES = st.lists(VALUE, min_size=1, max_size=N_INSTS)
TOTAL = st.one_of(st.sampled_from([0.0, 8.8e-5, -8.8e-5]), st.floats(-0.2, 0.2, allow_nan=False))


def _sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


def _posted(values: list[float], total: float) -> list[int]:
    """The on-chain scores of a round whose estimate is ``values`` and whose gain is ``total`` (default rules)."""
    normalized = normalize_to_total(values, total)
    names = [f"i{k}" for k in range(len(values))]
    scores = RoundScores(values=dict(zip(names, normalized)), std_errors=dict.fromkeys(names, 0.0),
                         fixed_point=dict(zip(names, to_fixed_point(normalized, FIXED_POINT_SCALE))), evaluations=0,
                         v_empty=0.0, v_grand=total, estimator="gtg", seconds=0.0)
    posted = gate.on_chain_scores(scores, {}, resolve_rules(), gain=total)
    assert posted is not None
    return [posted.fixed_point[n] for n in names]


@settings(max_examples=300, deadline=None)
@given(VALUES, TOTAL)
def test_a_round_whose_gain_is_not_positive_posts_no_positive_score(values, total):
    posted = _posted(values, total)
    if total <= 0:
        assert max(posted) <= 0
    for value, score in zip(values, posted):
        assert score <= 0 if value <= 0 else score >= 0


# -- normalization --------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(VALUES, TOTAL)
def test_normalization_never_crosses_zero_and_keeps_payout_shares(values, total):
    normalized = normalize_to_total(values, total)
    fixed = to_fixed_point(normalized, FIXED_POINT_SCALE)
    for value, after, integer in zip(values, normalized, fixed):
        assert _sign(after) in (_sign(value), 0)  # a subnormal may underflow to zero, never past it
        assert integer <= 0 if value <= 0 else integer >= 0  # a value <= 0 never becomes payable
    positive = [i for i, v in enumerate(values) if v > 1e-300]
    if len(positive) >= 2:  # the positive values keep their ratios: the round's payout shares do not move
        a, b = positive[:2]
        assert normalized[a] * values[b] == pytest.approx(normalized[b] * values[a], rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(VALUES, TOTAL)
def test_normalization_is_efficient_whenever_a_one_sided_rescaling_can_be(values, total):
    positive = math.fsum(v for v in values if v > 0)
    negative = math.fsum(v for v in values if v < 0)
    normalized = normalize_to_total(values, total)
    reachable = (positive > 0 and total - negative > 0) or (negative < 0 and total - positive < 0)
    if reachable:
        assert math.fsum(normalized) == pytest.approx(total, rel=1e-9, abs=1e-15)
    else:
        np.testing.assert_array_equal(normalized, values)  # kept as estimated


@pytest.mark.parametrize("total", [0.0, 8.8e-5, -8.8e-5, 0.3])
def test_all_zero_values_stay_zero_whatever_the_total(total):
    """The issue's round 12: zeros from the estimator used to become ``total / n`` each, paying everybody."""
    np.testing.assert_array_equal(normalize_to_total([0.0, 0.0, 0.0], total), [0.0, 0.0, 0.0])


def test_a_gtg_round_below_the_truncation_threshold_posts_all_zeros():
    """GTG's between-round truncation returns zeros when |v(N) - v(empty)| < 1e-4; they stay zeros on chain."""
    utility = lambda coalition: 0.6 + 8.8e-5 * len(coalition) / 3  # noqa: E731  (gain 8.8e-5 for 3 players)
    estimate = gtg_shapley(3, utility, seed=0)
    assert estimate.total == pytest.approx(8.8e-5)
    normalized = normalize_estimate(estimate)
    assert to_fixed_point(normalized.values, FIXED_POINT_SCALE) == [0, 0, 0]


# -- on the EVM: round sequences ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def federation() -> World:
    """One chain for the module (hypothesis examples each use a bounty of their own)."""
    w3 = connect("embedded")
    accounts = w3.eth.accounts
    gov, sponsor, aggregator, outsider = accounts[:4]
    deployment = deploy_fedledger(w3, gov, governance=gov, min_stake=MIN_STAKE, leave_cooldown=COOLDOWN)
    world = World(w3, FedLedgerClient.from_deployment(w3, deployment), gov, sponsor, aggregator, outsider,
                  list(accounts[4:4 + N_INSTS]), deployment=deployment)
    world.join_all()
    return world


ROUND = st.tuples(VALUES, TOTAL)
ALL_ZERO_ROUND = st.integers(1, N_INSTS).map(lambda n: ([0.0] * n, 8.8e-5))  # GTG's truncated round


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rounds=st.lists(st.one_of(ROUND, ALL_ZERO_ROUND), min_size=1, max_size=3),
       funding=st.sampled_from([ONE_ETH, ONE_ETH + 7, 10**9 + 1]))
def test_rounds_pay_only_positive_values_and_are_credited_exactly_or_carried(federation, rounds, funding):
    w = federation
    bounty_id = w.new_bounty(funding=funding, rounds=len(rounds))
    model = h(f"model {bounty_id}/0")
    for number, (values, total) in enumerate(rounds, start=1):
        escrow_before = w.ledger.escrow_of(bounty_id)
        fixed = _posted(values, total)
        players = w.insts[:len(values)]
        assert w.as_(w.aggregator).open_round(bounty_id, model) == number
        w.commit(bounty_id, number, players)
        model = h(f"model {bounty_id}/{number}")
        receipt = w.as_(w.aggregator).finalize_round(bounty_id, number, model, dict(zip(players, fixed)))
        value_of = dict(zip(players, values))
        scored = w.ledger.events(receipt, "ContributionScored")
        (finalized,) = w.ledger.events(receipt, "RoundFinalized")
        reward, credited = finalized["reward"], finalized["credited"]
        assert reward == escrow_before // (len(rounds) - number + 1)
        for e in scored:
            if value_of[e["institution"]] <= 0 or total <= 0:
                assert e["credit"] == 0, f"credited {e['credit']} for a value of {value_of[e['institution']]}"
        payable = sum(1 for e in scored if e["score"] > 0)
        if payable:
            event("round credited")
            last = number == len(rounds)
            assert reward - credited == 0 if last else reward - credited < payable  # dust, carried
        else:
            event("round carried")
            assert credited == 0 and w.ledger.escrow_of(bounty_id) == escrow_before  # carried whole
        bounty = w.ledger.bounty(bounty_id)
        assert bounty.funded == bounty.credited + bounty.refunded + bounty.escrowed
    remaining = w.ledger.escrow_of(bounty_id)
    if remaining:  # the last round carried: the sponsor takes back what no round credited
        w.as_(w.sponsor).refund_remainder(bounty_id)
    bounty = w.ledger.bounty(bounty_id)
    assert (bounty.escrowed, bounty.credited + bounty.refunded) == (0, funding)
