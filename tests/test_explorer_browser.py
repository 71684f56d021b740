"""The explorer page in a real headless Chromium, served by a real ``fedledger explorer`` process over Ganache.

The page's DOM (``chromium --headless --dump-dom``, after its scripts ran) must show the chain's numbers:
books, credits, claims, scores, reputations, commitment and model hashes, read back here through the
contract client and the audit trail. Screenshots go to the tests' tmp folders; the committee bounty's (attestations,
a dissent, a lapsed round) also to ``$EXPLORER_SCREENSHOT`` when set, e.g. ``docs/explorer.png``.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from decimal import ROUND_DOWN, Decimal, localcontext
from html.parser import HTMLParser
from pathlib import Path

import pytest
from web3 import Web3

from ledger.audit import sync_index, trace
from ledger.chain import connect
from ledger.client import BountyStatus, FedLedgerClient
from ledger.deployment import deploy_fedledger
from ledger.devchain import free_port
from ledger.example import scripted_bounty
from tests.world import MIN_STAKE, ONE_ETH, World, h

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.ganache,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium) to run this"),
    pytest.mark.timeout(120),
]
ROOT = Path(__file__).resolve().parents[1]
# Bounty 2: per round, (score, sample count) by institution index; round 3 stays open, with commitments only.
ROUNDS_2 = ({0: (2, 120), 1: (5, 340), 2: (3, 210), 3: (1, 90)}, {0: (4, 130), 1: (1, 300), 2: (6, 220), 3: (-2, 95)})
OPEN_ROUND_2 = {0: 140, 2: 230, 3: 100}


def eth6(wei: int) -> str:
    with localcontext() as ctx:
        ctx.prec = 200
        return str((Decimal(wei) / Decimal(10**18)).quantize(Decimal("0.000001"), rounding=ROUND_DOWN))


class PageIds(HTMLParser):
    """Every element carrying ``data-testid``: its attributes and its text (with its descendants')."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.found: dict[str, dict] = {}
        self._stack: list[list] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.VOID:
            if "data-testid" in attrs:
                self.found[attrs["data-testid"]] = {"attrs": attrs, "text": ""}
            return
        self._stack.append([tag, attrs, []])

    def handle_endtag(self, tag):
        while self._stack:
            open_tag, attrs, parts = self._stack.pop()
            text = "".join(parts)
            if "data-testid" in attrs:
                self.found[attrs["data-testid"]] = {"attrs": attrs, "text": text}
            if self._stack:
                self._stack[-1][2].append(text)
            if open_tag == tag:
                return

    def handle_data(self, data):
        if self._stack:
            self._stack[-1][2].append(data)

    def __getitem__(self, testid: str) -> dict:
        assert testid in self.found, f"the page has no element data-testid={testid!r}"
        return self.found[testid]

    def text(self, testid: str) -> str:
        return self[testid]["text"].strip()

    def attr(self, testid: str, name: str) -> str:
        return self[testid]["attrs"][name]


def _chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--window-size=1280,1600", *args, url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def dump(tmp_path: Path, url: str) -> PageIds:
    html = _chromium(tmp_path, url, "--dump-dom").stdout
    assert 'data-state="ready"' in html, f"the page did not finish rendering:\n{html[:3000]}"
    return PageIds(html)


def screenshot(tmp_path: Path, url: str, *, height: int = 1600, publish: bool = False) -> Path:
    """A PNG of the page's top ``height`` pixels in the test's tmp folder; with ``publish``, copied to
    ``$EXPLORER_SCREENSHOT`` when set."""
    shot = tmp_path / "explorer.png"
    _chromium(tmp_path, url, f"--screenshot={shot}", "--hide-scrollbars", f"--window-size=1280,{height}")
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if publish and os.environ.get("EXPLORER_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["EXPLORER_SCREENSHOT"])
    return shot


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def story(ganache, tmp_path):
    """A fresh FedLedger on the session's Ganache: bounty 1 is ledger.example's scripted story; bounty 2 has
    two finalized rounds of four institutions and a third open round; bounty 3 is cancelled."""
    w3 = connect(ganache.url)
    accounts = w3.eth.accounts
    deployment = deploy_fedledger(w3, accounts[0], min_stake=MIN_STAKE)
    deployment.rpc_url = ganache.url
    path = deployment.save(tmp_path / "deployment.json")
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    w = World(w3, ledger, accounts[0], accounts[1], accounts[2], accounts[3], list(accounts[4:8]), deployment=deployment)
    first = scripted_bounty(ledger, sponsor=w.sponsor, aggregator=w.aggregator, funder=w.outsider, institutions=w.insts)
    second = w.new_bounty(funding=3 * ONE_ETH, rounds=3)
    model = h("bounty 2 model 0")
    for number, plan in enumerate(ROUNDS_2, start=1):
        round_ = w.as_(w.aggregator).open_round(second, model)
        for i, (_, samples) in plan.items():
            w.as_(w.insts[i]).commit_update(second, round_, h(f"b2 r{round_} update {i}"), samples)
        model = h(f"bounty 2 model {number}")
        w.as_(w.aggregator).finalize_round(second, round_, model, {w.insts[i]: s for i, (s, _) in plan.items()})
    round_ = w.as_(w.aggregator).open_round(second, model)
    for i, samples in OPEN_ROUND_2.items():
        w.as_(w.insts[i]).commit_update(second, round_, h(f"b2 r{round_} update {i}"), samples)
    third = w.new_bounty(funding=ONE_ETH // 2)
    w.as_(w.sponsor).cancel_bounty(third)
    return w, deployment, path, (first, second, third)


@pytest.fixture
def explorer(story, tmp_path):
    """``fedledger explorer`` as a real process on a free port; yields its base URL."""
    w, _, path, _ = story
    port = free_port()
    log = open(tmp_path / "explorer.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "fedledger", "explorer", "--rpc", w.w3.provider.endpoint_uri, "--deployment", str(path),
         "--db", str(tmp_path / "index.sqlite"), "--port", str(port), "--sync-interval", "0.2"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get_json(url + "api/status")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"fedledger explorer did not start: {log.read()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def check_amount(page: PageIds, testid: str, wei: int) -> None:
    assert page.attr(testid, "data-wei") == str(wei), testid
    text = page.text(testid)
    assert f"{eth6(wei)} ETH" in text and f"{wei} wei" in text, f"{testid}: {text!r}"


def check_bounty(page: PageIds, w: World, report: dict, bounty_id: int) -> None:
    """Everything the page shows about one bounty equals the contract (client) and the audit trail (trace)."""
    b = w.ledger.bounty(bounty_id)
    assert page.text(f"bounty-status-{bounty_id}") == b.status.name.lower()
    assert page.text(f"detail-status-{bounty_id}") == b.status.name.lower()
    for key in ("funded", "credited", "refunded", "escrowed"):
        check_amount(page, f"books-{key}-{bounty_id}", getattr(b, key))
        check_amount(page, f"bounty-{key}-{bounty_id}", getattr(b, key))
    check_amount(page, f"books-escrowed-{bounty_id}", w.ledger.escrow_of(bounty_id))
    check_amount(page, f"books-claimed-{bounty_id}", report["books"]["claimed"])
    check_amount(page, f"books-unclaimed-{bounty_id}", b.credited - report["books"]["claimed"])
    for check in ("identity", "matches-contract", "no-overpayment"):
        assert page.attr(f"books-{check}-{bounty_id}", "data-value") == "true", check

    scored_reputation = {(t["round"], t["institution"]): t["reputation"] for t in report["timeline"]
                         if t["event"] == "ContributionScored"}
    assert len(report["rounds"]) == b.rounds_opened
    for r in report["rounds"]:
        key = f"{bounty_id}-{r['round']}"
        on_chain = w.ledger.round(bounty_id, r["round"])
        assert page.text(f"model-in-{key}") == "0x" + on_chain.global_model_hash.hex()
        if on_chain.finalized:
            assert page.text(f"model-out-{key}") == "0x" + on_chain.new_model_hash.hex()
            check_amount(page, f"reward-{key}", r["reward"])
        else:
            assert page.text(f"model-out-{key}") == "not finalized"
        assert page.text(f"round-status-{key}") == ("finalized" if on_chain.finalized else "open")
        for who, c in r["commitments"].items():
            k = f"{key}-{who}"
            assert page.text(f"update-hash-{k}") == "0x" + w.ledger.commitment_of(bounty_id, r["round"], who).hex()
            assert page.text(f"samples-{k}") == str(c["sample_count"])
            if who in r["scores"]:
                assert page.text(f"score-{k}") == str(r["scores"][who])
                check_amount(page, f"credit-{k}", r["credits"][who])
                assert page.text(f"reputation-{k}") == str(scored_reputation[(r["round"], who)])
            else:
                assert page.text(f"score-{k}") == "not scored"
    for who, info in report["institutions"].items():
        unclaimed, cumulative = w.ledger.contribution_of(bounty_id, who)
        check_amount(page, f"credited-{bounty_id}-{who}", info["credited"])
        check_amount(page, f"claimed-{bounty_id}-{who}", info["claimed"])
        check_amount(page, f"unclaimed-{bounty_id}-{who}", unclaimed)
        assert page.text(f"cumulative-score-{bounty_id}-{who}") == str(cumulative)
    claims = [t for t in report["timeline"] if t["event"] == "RewardClaimed"]
    for n, claim in enumerate(claims):
        assert page.attr(f"payout-{bounty_id}-{n}", "data-party") == claim["institution"]
        check_amount(page, f"payout-amount-{bounty_id}-{n}", claim["amount"])


def check_institutions(page: PageIds, w: World, finalized_rounds: int) -> None:
    for who in w.insts:
        inst = w.ledger.institution(who)
        assert page.attr(f"inst-reputation-{who}", "data-reputation") == str(inst.reputation)
        assert page.text(f"inst-reputation-{who}") == str(inst.reputation)
        check_amount(page, f"inst-stake-{who}", inst.stake)
        points = sorted((k for k in page.found if k.startswith(f"rep-point-{who}-")), key=lambda k: int(k.rsplit("-", 1)[1]))
        assert len(points) == finalized_rounds + 1, points  # the start, then every finalized round
        assert page.attr(points[-1], "data-reputation") == str(inst.reputation)


def test_explorer_page_shows_the_chain(story, explorer, tmp_path):
    w, deployment, _, (first, second, third) = story
    db = tmp_path / "check.sqlite"
    sync_index(w.w3, deployment, db)
    status = _get_json(explorer + "api/status")
    assert status["sync_error"] is None and status["synced_block"] == w.w3.eth.block_number

    page = dump(tmp_path, explorer + f"#/bounty/{first}")
    assert page.text("status-chain-id") == str(w.w3.eth.chain_id)
    for bounty_id in (first, second, third):
        assert page.text(f"bounty-status-{bounty_id}") == w.ledger.bounty(bounty_id).status.name.lower()
    assert w.ledger.bounty(third).status == BountyStatus.CANCELLED
    check_bounty(page, w, trace(db, first).to_dict(), first)
    check_institutions(page, w, finalized_rounds=4)
    assert page.attr(f"payout-{first}-0", "data-kind") == "reward claim"

    page = dump(tmp_path, explorer + f"#/bounty/{second}")
    report = trace(db, second).to_dict()
    check_bounty(page, w, report, second)
    open_round = report["rounds"][-1]
    assert len(open_round["commitments"]) == len(OPEN_ROUND_2) and not open_round["scores"]

    # The page follows the chain: a claim made now shows on the next load.
    claimant = w.insts[1]
    paid = w.as_(claimant).claim(second)
    assert paid > 0
    sync_index(w.w3, deployment, db)
    page = dump(tmp_path, explorer + f"#/bounty/{second}")
    check_bounty(page, w, trace(db, second).to_dict(), second)
    assert page.attr(f"payout-{second}-0", "data-party") == claimant
    check_amount(page, f"payout-amount-{second}-0", paid)
    check_amount(page, f"claimed-{second}-{claimant}", paid)

    page = dump(tmp_path, explorer)  # no bounty chosen: the latest one
    assert page.attr(f"bounty-detail-{third}", "data-bounty-id") == str(third)
    assert page.attr(f"payout-{third}-0", "data-kind") == "cancel refund"
    check_amount(page, f"payout-amount-{third}-0", ONE_ETH // 2)

    screenshot(tmp_path, explorer + f"#/bounty/{second}")


def test_explorer_page_shows_each_scorers_attestation_dissent_and_a_lapse(story, explorer, tmp_path):
    w, _, _, _ = story
    bounty, scorer, dissenter, digest, other = w.committee_story("browser")
    block = w.w3.eth.block_number
    deadline = time.monotonic() + 30
    while _get_json(explorer + "api/status")["synced_block"] < block:
        assert time.monotonic() < deadline, "the explorer did not sync"
        time.sleep(0.2)

    page = dump(tmp_path, explorer + f"#/bounty/{bounty}")
    key = f"{bounty}-1"
    for member in (Web3.to_checksum_address(w.aggregator), scorer.address):
        assert page.attr(f"attestation-{key}-{member}", "data-digest") == "0x" + digest.hex()
    assert page.attr(f"dissent-{key}-{dissenter.address}", "data-digest") == "0x" + other.hex()
    assert page.text(f"round-status-{bounty}-2") == "lapsed"
    assert f"attestations-{bounty}-2" not in page.found
    # the README's picture: tall enough to reach the rounds with their attestations, the dissent and the lapse
    screenshot(tmp_path, explorer + f"#/bounty/{bounty}", height=2450, publish=True)
