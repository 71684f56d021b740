"""The audit trail: a bounty's timeline and books rebuilt from events, by function and through the CLI."""

import json
import os
import subprocess
import sys

import pytest

from fedcore.errors import ChainError
from fedcore.types import Digest
from ledger.audit import sync_index, trace
from ledger.deployment import Deployment
from ledger.example import scripted_bounty
from tests.world import ONE_ETH, h


def _deployment(world) -> Deployment:
    return world.deployment


def _story(w) -> int:
    """Fund, top up, two rounds, a claim: the events an auditor must see (scores in ledger.example.SCORES)."""
    return scripted_bounty(w.ledger, sponsor=w.sponsor, aggregator=w.aggregator, funder=w.outsider,
                           institutions=w.insts)


def test_trace_rebuilds_rounds_and_books(joined, tmp_path):
    w = joined
    bounty_id = _story(w)
    other = w.new_bounty()  # another bounty's events must not leak into this trace
    db = tmp_path / "index.sqlite"
    assert sync_index(w.w3, _deployment(w), db) > 0
    report = trace(db, bounty_id, w.ledger)

    events = [event.name for event in report.timeline]
    assert events[:2] == ["BountyCreated", "BountyFunded"]
    on_chain = w.ledger.bounty(bounty_id)
    assert report.created.rules_hash == Digest(h("example scoring rules")) == on_chain.rules_hash
    assert report.timeline[0].args["rulesHash"] == str(report.created.rules_hash)
    assert events.count("UpdateCommitted") == 4 and events.count("ContributionScored") == 4
    assert events[-1] == "RewardClaimed"
    r1, r2 = report.rounds
    assert r1.committed[w.insts[0]].update_hash == w.ledger.commitment_of(bounty_id, 1, w.insts[0])
    assert r1.committed[w.insts[0]].sample_count > 0
    assert r1.scores == {w.insts[0]: 3, w.insts[1]: 1}
    assert r1.credits == {w.insts[0]: ONE_ETH * 3 // 4, w.insts[1]: ONE_ETH // 4}
    assert r1.credited == sum(r1.credits.values()) and r1.participants == 2
    assert r2.global_model_hash == r1.new_model_hash == Digest(h(f"bounty {bounty_id} model 1"))
    books = report.books
    assert books.funded == 2 * ONE_ETH
    assert books.credited == 2 * ONE_ETH and books.escrowed == 0
    assert books.claimed == ONE_ETH * 3 // 4 + ONE_ETH
    assert books.matches_contract and report.no_overpayment
    second = report.institutions[w.insts[1]]
    assert second.credited == ONE_ETH // 4
    assert second.name == f"hospital {w.insts[1][-4:]}"  # the name it joined with
    assert sorted(second.reputation_by_round) == [1, 2]
    assert second.reputation == second.reputation_by_round[2] == w.ledger.institution(w.insts[1]).reputation
    assert trace(db, other).books.funded == ONE_ETH
    assert report.institution(w.outsider).credited == 0 and report.institution(w.outsider).reputation is None

    # The JSON form keeps the keys `audit trace --format json` always had, with ETH strings beside the wei.
    as_json = report.to_dict()
    assert as_json["rounds"][0]["commitments"][w.insts[0]]["update_hash"] == str(r1.committed[w.insts[0]].update_hash)
    assert as_json["books"]["funded"] == 2 * ONE_ETH and as_json["books"]["funded_eth"] == "2.000000"
    assert as_json["institutions"][w.insts[1]]["credited_eth"] == "0.250000"
    assert json.loads(json.dumps(as_json)) == as_json

    # Re-syncing adds nothing: the index is keyed by each log's position.
    assert sync_index(w.w3, _deployment(w), db) == 0
    assert trace(db, bounty_id).timeline == report.timeline


def test_contribution_shares_come_from_the_numbers_that_paid(joined, tmp_path):
    """Reward-weighted shares of each paying round's positive scores: the payout shares but for dust; a carried round
    (no positive score) counts for nobody, and a non-positive score for nothing."""
    w = joined
    a, b, c, _ = w.insts
    bounty_id = w.new_bounty(funding=3 * ONE_ETH + 1, rounds=3)
    w.play_round(bounty_id, {a: 3, b: 1, c: -2})  # pays 1 ETH: 3/4 and 1/4
    w.play_round(bounty_id, {a: 0, b: 0, c: 0})  # pays nobody: 1 ETH carried
    w.play_round(bounty_id, {a: 1, b: 1, c: 0})  # the last round pays 2 ETH + 1 wei: half each (the wei as dust)
    db = tmp_path / "index.sqlite"
    sync_index(w.w3, _deployment(w), db)
    report = trace(db, bounty_id, w.ledger)
    assert [r.carried for r in report.rounds] == [False, True, False]
    shares = report.contribution_shares()
    assert shares == pytest.approx({a: (0.75 + 1) / 3, b: (0.25 + 1) / 3}, rel=1e-15)
    for who, share in shares.items():
        assert share == pytest.approx(report.institution(who).credited / report.books.credited, abs=1e-18)
    assert c not in shares and report.institution(c).credited == 0


def test_trace_books_revenue_from_the_splitter(joined, tmp_path):
    w = joined
    bounty_id = _story(w)  # complete: institution 0 holds 4/5 of the positive score, institution 1 1/5
    w.revenue_as(w.outsider).pay_revenue(bounty_id, 1_000)
    assert w.revenue_as(w.insts[1]).claim_revenue(bounty_id) == 200
    db = tmp_path / "index.sqlite"
    sync_index(w.w3, _deployment(w), db)
    report = trace(db, bounty_id, w.ledger)
    assert [event.name for event in report.timeline][-2:] == ["RevenuePaid", "RevenueClaimed"]
    assert (report.books.revenue_paid, report.books.revenue_claimed) == (1_000, 200)
    assert report.institutions[w.insts[1]].revenue_claimed == 200
    assert report.books.matches_contract


def test_unknown_bounty_is_a_clear_error(joined, tmp_path):
    db = tmp_path / "index.sqlite"
    sync_index(joined.w3, _deployment(joined), db)
    with pytest.raises(ChainError, match="unknown bounty id 9"):
        trace(db, 9)


@pytest.mark.ganache
def test_audit_trace_cli_on_ganache(ganache, tmp_path):
    env = {**os.environ, "FEDLEDGER_DEPLOYMENT": str(tmp_path / "deployment.json")}
    cli = [sys.executable, "-m", "fedledger"]
    subprocess.run(cli + ["deploy", "--rpc", ganache.url, "--min-stake", "0.01ether"], env=env, check=True,
                   capture_output=True, text=True)
    out = subprocess.run(cli + ["chain", "example-bounty", "--rpc", ganache.url, "--format", "json"], env=env,
                         check=True, capture_output=True, text=True).stdout
    bounty_id = json.loads(out)["bounty_id"]

    out = subprocess.run(cli + ["audit", "trace", "--bounty", str(bounty_id), "--rpc", ganache.url, "--format", "json"],
                         env=env, check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    assert report["books"]["funded"] == 2 * ONE_ETH and report["books"]["matches_contract"] is True
    assert len(report["rounds"]) == 2 and report["rounds"][0]["global_model_hash"] == "0x" + h("example model 0").hex()

    text = subprocess.run(cli + ["audit", "trace", "--bounty", str(bounty_id), "--rpc", ganache.url], env=env,
                          check=True, capture_output=True, text=True).stdout
    assert "RoundFinalized" in text and "books:" in text

    bad = subprocess.run(cli + ["audit", "trace", "--bounty", "999", "--rpc", ganache.url], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: unknown bounty id 999: no BountyCreated event in the index"


def test_trace_shows_each_institutions_declared_epsilon_per_round(joined, tmp_path):
    """A DP bounty: the trace carries the budget fixed at creation and each commitment's declared cumulative epsilon."""
    from ledger.client import epsilon_units

    w = joined
    bounty_id = w.new_bounty(rounds=2, epsilon_budget=epsilon_units(2.0))
    declared = {1: {w.insts[0]: 0.8, w.insts[1]: 0.5}, 2: {w.insts[0]: 1.6}}
    for round_, by_institution in declared.items():
        w.as_(w.aggregator).open_round(bounty_id, h(f"model {round_ - 1}"))
        for inst, epsilon in by_institution.items():
            w.as_(inst).commit_update(bounty_id, round_, h(f"{round_}/{inst}"), 100, epsilon_units(epsilon))
        w.as_(w.aggregator).finalize_round(bounty_id, round_, h(f"model {round_}"), {i: 1 for i in by_institution})
    db = tmp_path / "index.sqlite"
    sync_index(w.w3, _deployment(w), db)
    report = trace(db, bounty_id, w.ledger)
    assert report.timeline[0].args["epsilonBudget"] == 2_000_000
    as_json = report.to_dict()
    for round_, by_institution in declared.items():
        commitments = as_json["rounds"][round_ - 1]["commitments"]
        assert {who: c["epsilon"] for who, c in commitments.items()} == by_institution
    plain = report.rounds[0].committed[w.insts[0]]
    assert plain.epsilon == 800_000 and plain.declared_epsilon == 0.8


def test_trace_names_institutions_that_committed_but_were_not_scored(joined, tmp_path):
    """An update committed on chain that is not in the finalized outcome (never uploaded, refused, or dropped by the
    aggregator: the chain cannot tell which) is named per round, in the JSON and in the text."""
    from ledger.audit import format_trace

    w = joined
    a, b, c, _ = w.insts
    bounty_id = w.new_bounty(rounds=2)
    round_ = w.as_(w.aggregator).open_round(bounty_id, h("model-0"))
    w.commit(bounty_id, round_, [a, b, c])
    w.as_(w.aggregator).finalize_round(bounty_id, round_, h("model-1"), {a: 2, b: 1})  # c's update left unscored
    db = tmp_path / "index.sqlite"
    sync_index(w.w3, _deployment(w), db)
    report = trace(db, bounty_id, w.ledger)
    assert report.round(1).unscored == (c,)
    assert report.to_dict()["rounds"][0]["committed_not_scored"] == [c]
    assert f"round 1: committed but not scored: {c}" in format_trace(report)
    w.as_(w.aggregator).open_round(bounty_id, h("model-1"))
    w.commit(bounty_id, 2, [a])
    sync_index(w.w3, _deployment(w), db)
    assert trace(db, bounty_id).round(2).unscored == ()  # an open round has no outcome yet
