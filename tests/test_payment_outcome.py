"""The outcome the payment rules exist for, replayed from issue 11: a site whose labels are all flipped earns nothing.

Three sites share a public tabular task (Fed-Heart-Disease's pooled training rows): 150 clean rows, 50 clean rows,
and 100 rows with every label flipped. Sixteen rounds of real local training, FedAvg and GTG scoring against the
sponsor's validation rows (:func:`fedledger.simulation.run_simulation`, the computation the aggregator runs); each
round's fixed-point scores are finalized on the real EVM. On this seed round 15's gain falls below GTG's
round-truncation threshold (1e-4), which the issue saw at its round 12: that round used to pay every site
``gain / 3``; it now pays nobody, moves no reputation and carries its reward to round 16. Rounds whose gain is
negative (the flipped update averaged in costs more than the clean ones bring) pay nobody either (``pay_only_gain``),
but still judge: the flipped site's negative score lowers its reputation there too.
"""

from __future__ import annotations

import pytest

from aggregator.rules import resolve_rules
from aggregator.shapley import DEFAULT_ROUND_TRUNCATION_THRESHOLD
from fedcore.task import TaskSpec, TrainingSettings
from fedledger.simulation import Institution, run_simulation
from fedsets.data import carve_validation, default_data_root, pool_sites
from tests.world import h

pytestmark = pytest.mark.skipif(
    not (default_data_root() / "fed-heart-disease").is_dir(), reason="Fed-Heart-Disease raw files not present"
)

ROUNDS = 16
SITES = ("big", "small", "flipped")


@pytest.fixture(scope="module")
def rounds():
    from fedsets.heart import load_fed_heart_disease

    data = carve_validation(pool_sites(load_fed_heart_disease()), fraction=0.25, seed=0)
    spec = TaskSpec(name="flipped-labels", model="logreg", feature_columns=data.feature_names, label_column="num",
                    metric="accuracy",
                    training=TrainingSettings(local_steps=25, batch_size=4, lr=0.03, optimizer="sgd"))
    X, y = data.X_train, data.y_train
    sites = [Institution("big", X[:150], y[:150]), Institution("small", X[150:200], y[150:200]),
             Institution("flipped", X[200:300], 1 - y[200:300])]
    # the federation as it ran then: the flipped update averaged in every round (no contribution gate)
    rules = resolve_rules(strategy="fedavg", gate={"exclude_harmful": False})
    result = run_simulation(sites, spec, rules, rounds=ROUNDS, seed=0,
                            validation=(data.X_test, data.y_test), evaluate_every_round=False)
    return [r.outcome.scores for r in result.rounds]


def test_the_flipped_site_earns_nothing_and_loses_reputation(joined, rounds):
    w = joined
    floor = w.ledger.reputation_floor()
    bounty_id = w.new_bounty(funding=ROUNDS * floor, rounds=ROUNDS)  # every round's reward moves reputation fully
    address = dict(zip(SITES, w.insts))
    reputation = {site: w.ledger.institution(address[site]).reputation for site in SITES}
    truncated, no_gain = [], []
    carried = 0
    for number, scores in enumerate(rounds, start=1):
        below = abs(scores.v_grand - scores.v_empty) < DEFAULT_ROUND_TRUNCATION_THRESHOLD
        escrow = w.ledger.escrow_of(bounty_id)
        w.as_(w.aggregator).open_round(bounty_id, h(f"model {number - 1}"))
        w.commit(bounty_id, number, list(address.values()))
        receipt = w.as_(w.aggregator).finalize_round(
            bounty_id, number, h(f"model {number}"), {address[s]: scores.fixed_point[s] for s in SITES})
        scored = {e["institution"]: e for e in w.ledger.events(receipt, "ContributionScored")}
        (finalized,) = w.ledger.events(receipt, "RoundFinalized")
        after = {site: scored[address[site]]["reputation"] for site in SITES}
        flipped = scored[address["flipped"]]
        assert flipped["credit"] == 0, f"round {number}: the flipped site was credited {flipped['credit']}"
        assert after["flipped"] <= reputation["flipped"], f"round {number}: the flipped site's reputation rose"
        if below:  # too small a gain to tell the sites apart: nobody paid, nobody judged, the reward carried
            truncated.append(number)
            assert all(scores.fixed_point[s] == 0 for s in SITES)
            assert finalized["credited"] == 0 and w.ledger.escrow_of(bounty_id) == escrow
            assert after == reputation
            carried = finalized["reward"]
        elif scores.v_grand - scores.v_empty <= 0:  # no value delivered: nobody paid, harm still judged, carried
            no_gain.append(number)
            assert max(scores.fixed_point.values()) <= 0
            assert finalized["credited"] == 0 and w.ledger.escrow_of(bounty_id) == escrow
            for site in SITES:
                if scores.fixed_point[site] < 0:
                    assert after[site] < reputation[site], f"round {number}: {site}'s harm was not judged"
                else:
                    assert after[site] == reputation[site]
            carried = finalized["reward"]
        elif carried:  # the round after a carried one pays the carried reward too
            assert finalized["reward"] == escrow // (ROUNDS - number + 1) >= carried
            carried = 0
        reputation = after
    assert truncated == [15], f"rounds below the truncation threshold: {truncated}"
    credited = {site: w.ledger.contribution_of(bounty_id, address[site])[0] for site in SITES}
    assert credited["flipped"] == 0 and credited["big"] > credited["small"] > 0
    assert no_gain, "no round lost value"
    # every carried reward is paid by a later round that pays, or, after the last round, is the sponsor's to take back
    remaining = w.ledger.escrow_of(bounty_id)
    assert sum(credited.values()) + remaining == ROUNDS * floor and (remaining > 0) == (ROUNDS in no_gain)
    # Reliability: both clean sites were positive in every paying round, so both end near 10,000, the small one as
    # high as the big one (7 paying rounds: 10,000 - 5,000 x 0.8^7 = 8,951); the flipped site, negative in every paying
    # round, falls towards 0.
    assert reputation["big"] == reputation["small"] >= 8_900
    assert reputation["flipped"] <= 500  # negative in the paying and the no-gain rounds alike: judged in both
