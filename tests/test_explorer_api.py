"""The explorer's JSON API (FastAPI TestClient) on an embedded chain: every figure equals the contract's."""

from decimal import ROUND_DOWN, Decimal, localcontext

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from web3 import Web3

from fedledger.cli import main
from fedledger.explorer.app import ExplorerSource, create_app, create_explorer_router
from ledger.audit import trace
from ledger.chain import connect
from ledger.client import FedLedgerClient
from ledger.deployment import Deployment, deploy_fedledger
from ledger.example import scripted_bounty
from ledger.trace import format_eth
from tests.world import COOLDOWN, MIN_STAKE, ONE_ETH, World, deploy_token, h


def _deployment(w) -> Deployment:
    return w.deployment


def eth6(wei: int) -> str:
    """An independent reference for the page's ETH figure: rounded toward zero to 6 decimals."""
    with localcontext() as ctx:
        ctx.prec = 200
        return str((Decimal(wei) / Decimal(10**18)).quantize(Decimal("0.000001"), rounding=ROUND_DOWN))


@pytest.fixture(scope="module")
def built_story():
    """On one embedded chain for the module: bounty 1 is the scripted 2-round ETH story; 2 an ERC-20 bounty with
    one round; 3 cancelled before a round."""
    w3 = connect("embedded")
    accounts = w3.eth.accounts
    deployment = deploy_fedledger(w3, accounts[0], min_stake=MIN_STAKE, leave_cooldown=COOLDOWN)
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    w = World(w3, ledger, *accounts[:4], list(accounts[4:8]), deployment=deployment)
    w.tokens = {"TestToken": deploy_token(w3, "TestToken", w.gov)}
    w.join_all()
    first = scripted_bounty(w.ledger, sponsor=w.sponsor, aggregator=w.aggregator, funder=w.outsider, institutions=w.insts)
    token = w.tokens["TestToken"]
    second = w.new_bounty(funding=3 * ONE_ETH, token=token.address, rounds=2)
    w.play_round(second, {w.insts[2]: 5, w.insts[3]: 2})
    third = w.new_bounty(funding=ONE_ETH // 3)
    w.as_(w.sponsor).cancel_bounty(third)
    return w, (first, second, third)


@pytest.fixture
def story(built_story):
    """The module's story; whatever a test adds to the chain is rolled back after it."""
    tester = built_story[0].w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    yield built_story
    tester.revert_to_snapshot(snapshot)


@pytest.fixture
def api(story, tmp_path):
    w, ids = story
    db = tmp_path / "index.sqlite"
    app = create_app(lambda: ExplorerSource(w.w3, _deployment(w), db), sync_interval=0)
    with TestClient(app) as client:
        client.db = db
        yield w, ids, client


def _amount(a: dict, wei: int, is_eth: bool = True) -> None:
    assert a["wei"] == str(wei)
    assert a["eth"] == (eth6(wei) if is_eth else None)


def test_format_eth_rounds_toward_zero():
    assert format_eth(0) == "0.000000"
    assert format_eth(1) == "0.000000"
    assert format_eth(10**12 - 1) == "0.000000"
    assert format_eth(10**12) == "0.000001"
    assert format_eth(ONE_ETH * 3 // 4) == "0.750000"
    assert format_eth(ONE_ETH // 3) == "0.333333"
    assert format_eth(123 * ONE_ETH + 999_999_999_999_999_999) == "123.999999"
    assert format_eth(-(10**12)) == "-0.000001"
    for wei in (7, 10**15 + 5, 2**200):
        assert format_eth(wei) == eth6(wei)


def test_bounties_match_the_contract(api):
    w, (first, second, third), client = api
    status = client.get("/api/status").json()
    assert status["chain_id"] == w.w3.eth.chain_id and status["contract"] == w.ledger.address
    assert status["synced_block"] == w.w3.eth.block_number and status["sync_error"] is None and status["events"] > 0

    rows = client.get("/api/bounties").json()
    assert [r["id"] for r in rows] == [first, second, third]
    assert [r["status"] for r in rows] == ["completed", "active", "cancelled"]
    assert rows[0]["asset"] == {"token": "0x" + "00" * 20, "is_eth": True, "symbol": "ETH"}
    assert rows[1]["asset"]["token"] == w.tokens["TestToken"].address and not rows[1]["asset"]["is_eth"]
    for row in rows:
        on_chain = w.ledger.bounty(row["id"])
        is_eth = on_chain.is_eth
        for key in ("funded", "credited", "refunded", "escrowed"):
            _amount(row["books"][key], getattr(on_chain, key), is_eth)
        claimed = trace(client.db, row["id"]).books.claimed
        _amount(row["books"]["claimed"], claimed, is_eth)
        _amount(row["books"]["unclaimed"], on_chain.credited - claimed, is_eth)
        assert (row["num_rounds"], row["rounds_opened"], row["rounds_finalized"]) == (
            on_chain.num_rounds, on_chain.rounds_opened, on_chain.rounds_finalized)
        assert row["sponsor"] == on_chain.sponsor and row["aggregator"] == on_chain.aggregator
    assert rows[0]["books"]["claimed"]["wei"] == str(ONE_ETH * 3 // 4 + ONE_ETH)
    assert rows[2]["books"]["refunded"] == {"wei": str(ONE_ETH // 3), "eth": "0.333333"}


def test_bounty_detail_rounds_commitments_and_payouts(api):
    w, (first, second, third), client = api
    d = client.get(f"/api/bounties/{first}").json()
    assert d["books"]["matches_contract"] is True and d["books"]["no_overpayment"] is True
    assert len(d["rounds"]) == 2
    for r in d["rounds"]:
        on_chain = w.ledger.round(first, r["round"])
        assert r["status"] == "finalized"
        assert r["global_model_hash"] == "0x" + on_chain.global_model_hash.hex()
        assert r["new_model_hash"] == "0x" + on_chain.new_model_hash.hex()
        _amount(r["reward"], ONE_ETH)
        for c in r["commitments"]:
            assert c["update_hash"] == "0x" + w.ledger.commitment_of(first, r["round"], c["institution"]).hex()
            assert c["sample_count"] == "100" and c["scored"]
    r1, r2 = d["rounds"]
    inst0, inst1 = w.insts[0], w.insts[1]
    score = {c["institution"]: c["score"] for c in r1["commitments"]}
    assert score == {inst0: "3", inst1: "1"}
    credit = {c["institution"]: c["credit"] for c in r1["commitments"]}
    _amount(credit[inst0], ONE_ETH * 3 // 4)
    _amount(credit[inst1], ONE_ETH // 4)
    assert {c["institution"]: c["score"] for c in r2["commitments"]} == {inst0: "1", inst1: "-1"}
    assert r2["global_model_hash"] == r1["new_model_hash"]
    # Reputation after the last round equals the contract's current reputation.
    for c in r2["commitments"]:
        assert c["reputation"] == w.ledger.institution(c["institution"]).reputation

    members = {m["institution"]: m for m in d["institutions"]}
    for who, m in members.items():
        unclaimed, cumulative = w.ledger.contribution_of(first, who)
        _amount(m["unclaimed"], unclaimed)
        assert m["cumulative_score"] == str(cumulative)
    _amount(members[inst0]["credited"], ONE_ETH * 7 // 4)
    _amount(members[inst0]["claimed"], ONE_ETH * 7 // 4)
    _amount(members[inst1]["credited"], ONE_ETH // 4)
    _amount(members[inst1]["claimed"], 0)
    assert members[inst0]["name"] == "hospital " + inst0[-4:]

    assert [(p["kind"], p["party"]) for p in d["payouts"]] == [("reward claim", inst0)]
    _amount(d["payouts"][0]["amount"], ONE_ETH * 7 // 4)
    assert [f["kind"] for f in d["fundings"]] == ["funding", "funding"]
    assert d["timeline"][0]["event"] == "BountyCreated" and d["timeline"][-1]["event"] == "RewardClaimed"
    assert all(isinstance(v, str) for item in d["timeline"] for v in item["args"].values()
               if not isinstance(v, (dict, list, bool)))

    token_bounty = client.get(f"/api/bounties/{second}").json()
    assert token_bounty["books"]["matches_contract"] is True
    assert token_bounty["rounds"][0]["reward"] == {"wei": str(3 * ONE_ETH // 2), "eth": None}
    cancelled = client.get(f"/api/bounties/{third}").json()
    assert [(p["kind"], p["party"]) for p in cancelled["payouts"]] == [("cancel refund", w.sponsor)]
    assert cancelled["rounds"] == []

    missing = client.get("/api/bounties/99")
    assert missing.status_code == 404 and "unknown bounty id 99" in missing.json()["detail"]


def test_bounty_detail_shows_declared_epsilon_per_institution_and_round(api):
    from ledger.client import epsilon_units

    w, (first, _, _), client = api
    dp_bounty = w.new_bounty(rounds=1, epsilon_budget=epsilon_units(1.0))
    w.as_(w.aggregator).open_round(dp_bounty, h("m0"))
    w.as_(w.insts[0]).commit_update(dp_bounty, 1, h("dp/0"), 100, epsilon_units(0.75))
    w.as_(w.insts[1]).commit_update(dp_bounty, 1, h("dp/1"), 100, epsilon_units(1.0))
    rounds = client.get(f"/api/bounties/{dp_bounty}").json()["rounds"]
    assert {c["institution"]: c["epsilon"] for c in rounds[0]["commitments"]} == {w.insts[0]: 0.75, w.insts[1]: 1.0}
    without_dp = client.get(f"/api/bounties/{first}").json()["rounds"]
    assert all(c["epsilon"] is None for r in without_dp for c in r["commitments"])


def test_institutions_and_reputation_match_the_contract(api):
    w, (first, second, _), client = api
    insts = client.get("/api/institutions").json()
    assert [i["address"] for i in insts] == w.insts
    for i in insts:
        on_chain = w.ledger.institution(i["address"])
        assert i["reputation"] == on_chain.reputation and i["status"] == "registered"
        _amount(i["stake"], on_chain.stake)
        assert i["initial_reputation"] == 5000
    by = {i["address"]: i for i in insts}
    assert by[w.insts[0]]["rounds_scored"] == 2 and by[w.insts[0]]["bounties"] == [first]
    eth = next(e for e in by[w.insts[0]]["earnings"] if e["asset"]["is_eth"])
    _amount(eth["credited"], ONE_ETH * 7 // 4)
    token = next(e for e in by[w.insts[2]]["earnings"] if not e["asset"]["is_eth"])
    assert token["credited"]["wei"] == str(w.ledger.contribution_of(second, w.insts[2])[0]) and token["credited"]["eth"] is None

    rep = client.get("/api/reputation").json()
    assert [c["label"] for c in rep["rounds"]] == ["start", f"b{first} r1", f"b{first} r2", f"b{second} r1"]
    series = {s["institution"]: s for s in rep["series"]}
    assert list(series) == w.insts
    for who, s in series.items():
        assert [p["index"] for p in s["points"]] == [0, 1, 2, 3]
        assert s["points"][0]["reputation"] == 5000 and not s["points"][0]["scored"]
        assert s["points"][-1]["reputation"] == w.ledger.institution(who).reputation
    inst0 = series[w.insts[0]]["points"]
    assert [p["scored"] for p in inst0] == [False, True, True, False]
    assert [p["score"] for p in inst0] == [None, "3", "1", None]
    assert inst0[3]["reputation"] == inst0[2]["reputation"]  # not scored: unchanged


def test_index_follows_the_chain_between_requests(api):
    w, (first, second, _), client = api
    before = client.get(f"/api/bounties/{second}").json()
    assert before["rounds_finalized"] == 1
    round_ = w.as_(w.aggregator).open_round(second, w.ledger.round(second, 1).new_model_hash)
    w.commit(second, round_, [w.insts[2]])
    opened = client.get(f"/api/bounties/{second}").json()
    assert opened["rounds"][-1]["status"] == "open" and opened["rounds"][-1]["new_model_hash"] is None
    assert opened["rounds"][-1]["commitments"][0]["scored"] is False
    w.as_(w.aggregator).finalize_round(second, round_, b"\x07" * 32, {w.insts[2]: 4})
    after = client.get("/api/bounties").json()[1]
    assert after["status"] == "completed" and after["rounds_finalized"] == 2
    assert after["books"]["credited"]["wei"] == str(w.ledger.bounty(second).credited)


def test_chain_unreachable_serves_the_index_and_says_why(story, tmp_path):
    w, (first, _, _) = story
    deployment = _deployment(w)
    db = tmp_path / "index.sqlite"
    source = {"w3": w.w3}
    client = TestClient(create_app(lambda: ExplorerSource(source["w3"], deployment, db), sync_interval=0))
    assert client.get("/api/status").json()["sync_error"] is None
    source["w3"] = Web3(Web3.HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 1}))
    status = client.get("/api/status").json()
    assert status["sync_error"] and status["synced_block"] == w.w3.eth.block_number
    assert client.get(f"/api/bounties/{first}").json()["books"]["funded"]["wei"] == str(2 * ONE_ETH)


def test_page_static_files_and_mounting_under_a_prefix(story, tmp_path):
    w, _ = story
    source = lambda: ExplorerSource(w.w3, _deployment(w), tmp_path / "index.sqlite")  # noqa: E731
    client = TestClient(create_app(source))
    page = client.get("/")
    assert page.status_code == 200 and '<base href="/">' in page.text and "static/app.js" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "")  # no external resource
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404

    host = FastAPI()

    @host.get("/api/health")
    def health() -> dict:
        return {"ok": True}

    host.include_router(create_explorer_router(source), prefix="/explorer")
    hosted = TestClient(host)
    assert hosted.get("/api/health").json() == {"ok": True}
    assert '<base href="/explorer/">' in hosted.get("/explorer/").text
    assert hosted.get("/explorer").text == hosted.get("/explorer/").text  # redirected to the slash form
    assert hosted.get("/explorer/api/status").json()["contract"] == w.ledger.address
    assert hosted.get("/explorer/static/app.js").status_code == 200


def test_cli_refuses_the_embedded_chain(capsys):
    assert main(["explorer", "--rpc", "embedded"]) == 2
    assert "embedded chain" in capsys.readouterr().err


def test_bounty_detail_shows_each_scorers_attestation_dissent_and_a_lapsed_round(api):
    w, _, client = api
    bounty, scorer, dissenter, digest, other = w.committee_story("explorer api")
    rounds = client.get(f"/api/bounties/{bounty}").json()["rounds"]
    assert {(a["scorer"], a["outcome_digest"]) for a in rounds[0]["attestations"]} == {
        (Web3.to_checksum_address(w.aggregator), "0x" + digest.hex()), (scorer.address, "0x" + digest.hex())}
    assert [(d["scorer"], d["outcome_digest"]) for d in rounds[0]["dissents"]] == [(dissenter.address, "0x" + other.hex())]
    assert rounds[0]["status"] == "finalized" and rounds[1]["status"] == "lapsed"
    assert rounds[1]["attestations"] == [] and rounds[1]["reward"] is None
