"""A scoring committee as real processes on Ganache and on Anvil (one federation per engine, shared by the module's
tests): ``fedledger aggregator serve`` and ``fedledger scorer`` processes, the sponsor's
``create-bounty --scorer --quorum``, and two hospitals driven from the test (commit on chain, upload signed) so a
round takes one short commit window.

On Anvil the module runs the two tests whose scenario depends on the chain: the dissent (``finalizeRoundAttested``
with the honest attestation, a tampered one refused, ``recordDissent``) and the lapse (``lapseRound`` judged by
block time, a mined block, then ``scorer serve``). The first test's chain part (``finalizeRoundAttested`` over two
signatures) is a subset of the dissent test's; what it adds (the ``attest`` process's report, ``audit trace``)
reads the same events on any chain, so it stays on Ganache.

* ``test_quorum_of_two_finalizes_with_a_scorer_process``: aggregator + one ``scorer attest`` process, quorum 2: the
  scorer fetches the updates as a member, recomputes the round, attests; the round is finalized through
  ``finalizeRoundAttested`` with both attestations on chain, and ``audit trace`` shows them.
* ``test_a_dishonest_scorer_is_outvoted_and_its_dissent_stays_on_chain``: committee aggregator + honest scorer +
  a scorer attesting other scores (test-only FEDLEDGER_SCORER_TAMPER), quorum 2: the honest outcome is finalized,
  the other scorer's attestation does not count and its ``ScorerDissented`` is on chain.
* ``test_with_the_only_other_scorer_offline_the_round_lapses_and_its_reward_carries``: quorum 2, no scorer running:
  round 1 lapses after its window and the recovery grace (nothing credited); a scorer started then lets round 2
  finalize with the whole funding as its reward.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from fedcore import codec
from ledger.devchain import GANACHE
from tests.e2e.conftest import _write_key, upload
from tests.world import RPC_ENGINES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

WINDOW = 20
GRACE = 5  # recovery grace: a round without a quorum lapses this long after its window
HONEST, DISHONEST = 9, 0  # dev-chain accounts of the two scorers (0 deployed the contracts and is no institution)
PLAYERS = ("cleveland", "hungarian")


@pytest.fixture(scope="module", params=RPC_ENGINES)
def chain_engine(request) -> str:
    """The module on Ganache, then on Anvil (one federation per engine; params carry the engine's marker)."""
    return request.param


@pytest.fixture(scope="module")
def scorers(federation):
    """Keystores of the two scorer keys (``node init --import-key-file``), by dev-chain account index."""
    from tests.e2e.conftest import Processes

    fed = federation
    setup = Processes(fed.root / "scorer-logs", label="scorer keystores")
    accounts = fed.dev_chain.accounts
    paths = {}
    for index in (HONEST, DISHONEST):
        paths[index] = fed.keys / f"scorer-{index}.json"
        key = _write_key(fed.root / f"scorer-{index}.key", accounts[index])
        setup.run(f"init-scorer-{index}", "node", "init", "--keystore", paths[index], "--import-key-file", key)
        key.unlink()
    return {index: (accounts[index], paths[index]) for index in paths}


def committee_bounty(fed, procs, scorer_accounts, *, rounds: int = 1) -> int:
    extra = [a for account in scorer_accounts for a in ("--scorer", account.address)]
    return fed.create_bounty(procs, rounds=rounds, commit_window=WINDOW,
                             extra=(*extra, "--quorum", 2, "--recovery-grace", GRACE))


def play_round(fed, aggregator, bounty_id: int, round_: int) -> None:
    """Two hospitals commit on chain and upload small distinct updates (no node processes: one short window)."""
    weights = codec.decode(aggregator.http.get(f"/bounties/{bounty_id}/model").content)
    by_name = {a.address: a for a in fed.dev_chain.accounts}
    for i, name in enumerate(PLAYERS):
        hospital = fed.hospitals[name]
        account = by_name[hospital.address]
        body = codec.encode({k: np.full_like(v, 0.01 * (i + 1) * (1 if i else -1)) for k, v in weights.items()})
        fed.ledger.as_sender(account).commit_update(bounty_id, round_,
                                                    fed.commitment(bounty_id, round_, account.address, body),
                                                    hospital.rows)
        assert upload(aggregator, fed, account, bounty_id, round_, body).status_code == 202


def scorer_args(fed, action: str, bounty_id: int, aggregator, keystore, *more) -> list:
    return ["scorer", action, "--bounty", bounty_id, *more, "--aggregator", aggregator.url,
            "--task", fed.data / "task.json", "--validation", fed.data / "validation.csv", "--rules", fed.rules,
            "--keystore", keystore, *fed.chain, "--db", fed.root / f"index-{bounty_id}-{keystore.stem}.sqlite",
            "--poll-interval", 0.5, "--timeout", 300, "--format", "json"]


def open_round(fed, aggregator, bounty_id: int, round_: int) -> None:
    fed.wait_until(lambda: (c := aggregator.current(bounty_id))["status"] == "open" and c["round"] == round_,
                   timeout=120, what=f"round {round_} to open", alive=(aggregator.proc,))


def test_quorum_of_two_finalizes_with_a_scorer_process(federation, chain_engine, scorers, procs, tmp_path):
    if chain_engine != GANACHE:
        pytest.skip("chain-wise a subset of the dissent test, which runs on this engine (see the module doc)")
    fed = federation
    account, keystore = scorers[HONEST]
    bounty_id = committee_bounty(fed, procs, [account])
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator", extra=("--upload-grace", 0))
    open_round(fed, aggregator, bounty_id, 1)
    scorer = procs.spawn("scorer", *scorer_args(fed, "attest", bounty_id, aggregator, keystore, "--round", 1))
    play_round(fed, aggregator, bounty_id, 1)
    report = json.loads(procs.finish(scorer, timeout=300).stdout())
    assert report["status"] == "agreed", report
    chain_round = fed.ledger.round(bounty_id, 1)
    assert chain_round.finalized and report["new_model_hash"] == "0x" + bytes(chain_round.new_model_hash).hex()
    attested = fed.events("OutcomeAttested", bounty_id)
    assert {e["scorer"] for e in attested} == {fed.aggregator_address, account.address}
    assert {"0x" + e["outcomeDigest"].hex() for e in attested} == {report["outcome_digest"]}
    assert fed.events("ScorerDissented", bounty_id) == []
    scored = {e["institution"]: e["score"] for e in fed.events("ContributionScored", bounty_id)}
    assert scored == dict(zip(report["participants"], map(int, report["scores"]), strict=True))
    record = aggregator.round_record(bounty_id, 1)
    assert [(a["scorer"], a["matches"]) for a in record["attestations"]] == [(account.address, True)]
    trace = json.loads(procs.run("audit-trace", "audit", "trace", "--bounty", bounty_id, *fed.chain,
                                 "--format", "json").stdout())
    traced = trace["rounds"][0]
    assert {a["scorer"] for a in traced["attestations"]} == {fed.aggregator_address, account.address}


def test_a_dishonest_scorer_is_outvoted_and_its_dissent_stays_on_chain(federation, scorers, procs, tmp_path):
    fed = federation
    (honest, honest_keys), (cheat, cheat_keys) = scorers[HONEST], scorers[DISHONEST]
    bounty_id = committee_bounty(fed, procs, [honest, cheat])
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator", extra=("--upload-grace", 0))
    open_round(fed, aggregator, bounty_id, 1)
    good = procs.spawn("scorer-honest", *scorer_args(fed, "attest", bounty_id, aggregator, honest_keys, "--round", 1))
    bad = procs.spawn("scorer-dishonest", *scorer_args(fed, "attest", bounty_id, aggregator, cheat_keys, "--round", 1),
                      env=fed.env(FEDLEDGER_SCORER_TAMPER="1"))
    play_round(fed, aggregator, bounty_id, 1)
    good_report = json.loads(procs.finish(good, timeout=300).stdout())
    bad_report = json.loads(procs.finish(bad, timeout=300).stdout())
    assert good_report["status"] == "agreed" and bad_report["status"] == "dissented", (good_report, bad_report)
    assert bad_report["scores"] != good_report["scores"]
    attested = {e["scorer"] for e in fed.events("OutcomeAttested", bounty_id)}
    assert attested == {fed.aggregator_address, honest.address}  # the other outcome did not count
    dissents = fed.events("ScorerDissented", bounty_id)
    assert [(e["scorer"], e["round"], "0x" + e["outcomeDigest"].hex()) for e in dissents] == [
        (cheat.address, 1, bad_report["outcome_digest"])]
    scored = {e["institution"]: e["score"] for e in fed.events("ContributionScored", bounty_id)}
    assert scored == dict(zip(good_report["participants"], map(int, good_report["scores"]), strict=True))


def test_with_the_only_other_scorer_offline_the_round_lapses_and_its_reward_carries(federation, scorers, procs,
                                                                                    tmp_path):
    fed = federation
    account, keystore = scorers[HONEST]
    bounty_id = committee_bounty(fed, procs, [account], rounds=2)
    funded = fed.ledger.bounty(bounty_id).funded
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator", extra=("--upload-grace", 0))
    open_round(fed, aggregator, bounty_id, 1)
    play_round(fed, aggregator, bounty_id, 1)
    stalled_after = fed.ledger.round(bounty_id, 1).commit_deadline + GRACE

    def lapsed() -> bool:  # the contract judges a stall by block time, and an idle dev chain mines no block: mine one
        if time.time() > stalled_after + 1:
            fed.w3.provider.make_request("evm_mine", [])
        return bool(fed.events("RoundLapsed", bounty_id))

    fed.wait_until(lapsed, timeout=120, what="round 1 to lapse", alive=(aggregator.proc,), interval=1)
    assert fed.events("ContributionScored", bounty_id) == [] and fed.events("RoundFinalized", bounty_id) == []
    assert fed.ledger.escrow_of(bounty_id) == funded
    assert aggregator.round_record(bounty_id, 1)["step"] == "lapsed"
    scorer = procs.start("scorer", *scorer_args(fed, "serve", bounty_id, aggregator, keystore))
    open_round(fed, aggregator, bounty_id, 2)
    assert fed.ledger.round(bounty_id, 2).global_model_hash == fed.ledger.round(bounty_id, 1).global_model_hash
    play_round(fed, aggregator, bounty_id, 2)
    fed.wait_completed(bounty_id, timeout=180, alive=(aggregator.proc, scorer))
    finalized = fed.events("RoundFinalized", bounty_id)
    assert [(e["round"], e["reward"]) for e in finalized] == [(2, funded)]  # round 1's reward carried
    assert scorer.wait(120) == 0, scorer.tail()  # `serve` ends with the bounty
    lines = [json.loads(line) for line in scorer.stdout().splitlines() if line.startswith("{")]
    assert [(r["round"], r["status"]) for r in lines] == [(1, "lapsed"), (2, "agreed")]
    fed.audit_verify(procs, bounty_id, aggregator.url)  # the lapse breaks neither the model chain nor the replay
