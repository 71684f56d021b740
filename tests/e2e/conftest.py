"""End-to-end helpers: a whole federation as real processes started through the CLI.

One dev chain per test module (``start_chain``: no block times or nonces shared with other tests), Ganache unless
the module overrides the fixture ``chain_engine`` (tests/e2e/test_federation.py and test_committee.py run on
Ganache and on Anvil), on which the module fixture ``federation`` deploys FedLedger (``fedledger deploy``), writes the Fed-Heart-Disease files
(``fedledger data heart``), creates the aggregator's and the four hospitals' keystores from the chain's deterministic
dev keys (``fedledger node init --import-key-file``) and joins the hospitals (``fedledger node join``). Two more
participants are driven from the test itself with the Python client, fedcore.signing and httpx: ``mallory`` (a
registered institution that misbehaves) and ``outsider`` (a key that never joined).

Dev-chain accounts: (0) deployer, (1) sponsor (unlocked, ``--from``), (2) aggregator, (3) mallory,
(4)-(7) cleveland, hungarian, switzerland, va, (8) outsider. The same layout as the README walkthrough.

Every long-running process (aggregator, nodes) is started in its own session with its output in a log file, and
killed at the end of its test (SIGTERM, then SIGKILL). When a test fails, the tails of all its logs are attached
to the report (section "e2e process logs").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedcore.signing import sign_upload
from ledger.devchain import GANACHE

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "e2e federation password"
HOSPITALS = ("cleveland", "hungarian", "switzerland", "va")
HOSPITAL_ACCOUNTS = {"cleveland": 4, "hungarian": 5, "switzerland": 6, "va": 7}
SPONSOR_ACCOUNT, AGGREGATOR_ACCOUNT, MALLORY_ACCOUNT, OUTSIDER_ACCOUNT = 1, 2, 3, 8
STAKE = "1ether"
ZERO_HASH = bytes(32)

_ACTIVE: list[Processes] = []  # registries whose logs a failure report shows


# -- processes ---------------------------------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    """The environment of every CLI process: ours without FEDLEDGER_* settings (but where the data is), plus the
    password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLEDGER_") or k == "FEDLEDGER_DATA"}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", FEDLEDGER_PASSWORD=PASSWORD)
    env.update(extra)
    return env


def fedledger(*args: Any) -> list[str]:
    return [sys.executable, "-m", "fedledger", *(str(a) for a in args)]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    rows = text.splitlines()[-lines:]
    return "\n".join(rows) if rows else "(no output)"


@dataclass
class Proc:
    """A CLI process started by :class:`Processes` (own session, so signals reach it alone)."""

    name: str
    args: list[str]
    popen: subprocess.Popen
    out: Path
    err: Path | None = None  # None: stderr goes to ``out`` too
    long_running: bool = True

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout:.0f}s\n{self.tail()}")

    def stop(self, grace: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return (self.err or self.out).read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        state = "running" if self.alive() else f"exit {self.returncode}"
        text = f"--- {self.name} ({state}): {' '.join(self.args[2:])}\n{_tail(self.out, lines)}"
        if self.err is not None and self.err.exists() and self.err.stat().st_size:
            text += f"\n--- {self.name} stderr\n{_tail(self.err, lines)}"
        return text


class Processes:
    """The CLI processes of one test (or of the module's set-up): started, logged, and killed at the end."""

    def __init__(self, log_dir: Path, *, label: str):
        self.log_dir = log_dir
        self.label = label
        self.procs: list[Proc] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def _paths(self, name: str, split: bool) -> tuple[Path, Path | None]:
        stem = self.log_dir / f"{len(self.procs):02d}-{name}"
        return (stem.with_suffix(".out"), stem.with_suffix(".err")) if split else (stem.with_suffix(".log"), None)

    def start(self, name: str, *args: Any, env: dict[str, str] | None = None) -> Proc:
        """Start ``fedledger ARGS`` in the background, stdout and stderr in one log file."""
        command = fedledger(*args)
        out, _ = self._paths(name, split=False)
        with open(out, "wb") as log:
            popen = subprocess.Popen(command, cwd=REPO, env=env or cli_env(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, command, popen, out)
        self.procs.append(proc)
        return proc

    def spawn(self, name: str, *args: Any, env: dict[str, str] | None = None) -> Proc:
        """Start a short command with stdout and stderr kept apart (see :meth:`finish`)."""
        command = fedledger(*args)
        out, err = self._paths(name, split=True)
        with open(out, "wb") as out_file, open(err, "wb") as err_file:
            popen = subprocess.Popen(command, cwd=REPO, env=env or cli_env(), stdout=out_file, stderr=err_file,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, command, popen, out, err, long_running=False)
        self.procs.append(proc)
        return proc

    @staticmethod
    def finish(proc: Proc, *, expect: int = 0, timeout: float = 180) -> Proc:
        code = proc.wait(timeout)
        if code != expect:
            pytest.fail(f"`fedledger {' '.join(proc.args[3:])}` exited {code}, expected {expect}\n{proc.tail(60)}")
        return proc

    def run(self, name: str, *args: Any, expect: int = 0, timeout: float = 180, env: dict[str, str] | None = None) -> Proc:
        """Run ``fedledger ARGS`` to the end and check its exit code."""
        return self.finish(self.spawn(name, *args, env=env), expect=expect, timeout=timeout)

    def run_all(self, commands: dict[str, list[Any]], *, expect: int | dict[str, int] = 0, timeout: float = 180
                ) -> dict[str, Proc]:
        """Run several commands at once (different senders: no nonce races) and check each exit code."""
        started = {name: self.spawn(name, *args) for name, args in commands.items()}
        return {name: self.finish(proc, expect=expect[name] if isinstance(expect, dict) else expect, timeout=timeout)
                for name, proc in started.items()}

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def report(self) -> str:
        parts = [f"==== {self.label}: logs in {self.log_dir}"]
        for proc in self.procs:
            if not proc.long_running and proc.returncode == 0:
                parts.append(f"--- {proc.name}: exit 0")
            else:
                parts.append(proc.tail())
        return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _ACTIVE:
        report.sections.append(("e2e process logs", "\n".join(p.report() for p in _ACTIVE)))


@pytest.fixture
def procs(tmp_path):
    """This test's processes; all killed at teardown."""
    registry = Processes(tmp_path / "logs", label="this test")
    _ACTIVE.append(registry)
    try:
        yield registry
    finally:
        registry.stop_all()
        _ACTIVE.remove(registry)


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, alive: tuple[Proc, ...] = (),
               interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail early if a process in ``alive`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in alive:
            if not proc.alive():
                pytest.fail(f"{proc.name} exited ({proc.returncode}) while waiting for {what}\n{proc.tail(60)}")
        try:
            value = predicate()
        except (httpx.HTTPError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- the federation ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hospital:
    name: str
    address: str
    keystore: Path
    data: Path
    rows: int


@dataclass
class Aggregator:
    proc: Proc
    url: str
    state_dir: Path
    http: httpx.Client

    def current(self, bounty_id: int) -> dict:
        return self.http.get(f"/bounties/{bounty_id}/rounds/current").json()

    def round_record(self, bounty_id: int, round_: int) -> dict:
        response = self.http.get(f"/bounties/{bounty_id}/rounds/{round_}")
        response.raise_for_status()
        return response.json()


@dataclass
class Federation:
    """The module's chain, deployment, data and identities, and the commands every test runs."""

    root: Path
    dev_chain: Any  # ledger.devchain.DevChain
    w3: Any
    ledger: Any  # FedLedgerClient without a sender
    deployment: Path
    data: Path
    keys: Path
    aggregator_keystore: Path
    aggregator_address: str
    sponsor_address: str
    hospitals: dict[str, Hospital]
    mallory: Any  # LocalAccount, registered, driven from the test
    outsider: Any  # LocalAccount, never joined
    setup_seconds: float = 0.0
    _http: list[httpx.Client] = field(default_factory=list)

    # the module-level helpers, for the test module (which does not import conftest)
    wait_until = staticmethod(wait_until)
    env = staticmethod(cli_env)

    @property
    def rpc(self) -> str:
        return self.dev_chain.url

    @property
    def chain(self) -> list[str]:
        return ["--rpc", self.rpc, "--deployment", str(self.deployment)]

    # -- sponsor ----------------------------------------------------------------------------------------
    @property
    def rules(self) -> Path:
        return self.data / "rules.json"

    def create_bounty(self, procs: Processes, *, rounds: int, commit_window: int = 30, reward: str = "3ether",
                      extra: tuple = ()) -> int:
        if not self.rules.exists():  # the sponsor fixes the round rules before anyone trains
            procs.run("sponsor-rules", "sponsor", "rules", "--task", self.data / "task.json", "--out", self.rules)
        proc = procs.run(
            "sponsor-create-bounty", "sponsor", "create-bounty", *self.chain, "--from", self.sponsor_address,
            "--task", self.data / "task.json", "--validation", self.data / "validation.csv", "--rules", self.rules,
            "--reward", reward,
            "--aggregator", self.aggregator_address, "--rounds", rounds, "--commit-window", commit_window,
            "--deadline-days", 1, "--format", "json", *extra,
        )
        return int(json.loads(proc.stdout())["bounty_id"])

    # -- aggregator -------------------------------------------------------------------------------------
    def aggregator_args(self, bounty_id: int, state_dir: Path, port: int, *extra: Any) -> list[Any]:
        return ["aggregator", "serve", "--bounty", bounty_id, "--task", self.data / "task.json",
                "--validation", self.data / "validation.csv", "--rules", self.rules, "--keystore", self.aggregator_keystore,
                *self.chain,
                "--state-dir", state_dir, "--port", port, *extra]

    def start_aggregator(self, procs: Processes, bounty_id: int, state_dir: Path, *, port: int | None = None,
                         name: str = "aggregator", env: dict[str, str] | None = None, extra: tuple = ()) -> Aggregator:
        from ledger.devchain import free_port

        port = port or free_port()
        proc = procs.start(name, *self.aggregator_args(bounty_id, state_dir, port, *extra), env=env)
        url = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=url, timeout=30)
        self._http.append(http)
        aggregator = Aggregator(proc, url, state_dir, http)
        wait_until(lambda: http.get("/health").json()["bounty_id"] == bounty_id, timeout=120,
                   what=f"{name} to answer /health", alive=(proc,))
        return aggregator

    # -- nodes ------------------------------------------------------------------------------------------
    def node_args(self, hospital: str, bounty_id: int, aggregator_url: str, state_root: Path) -> list[Any]:
        h = self.hospitals[hospital]
        return ["node", "train", "--bounty", bounty_id, "--data", h.data, "--aggregator", aggregator_url,
                "--keystore", h.keystore, *self.chain, "--state-dir", state_root / hospital, "--no-progress"]

    def start_nodes(self, procs: Processes, bounty_id: int, aggregator_url: str, state_root: Path) -> dict[str, Proc]:
        return {h: procs.start(f"node-{h}", *self.node_args(h, bounty_id, aggregator_url, state_root))
                for h in self.hospitals}

    @staticmethod
    def node_state(state_root: Path, hospital: str, bounty_id: int) -> dict:
        path = state_root / hospital / str(bounty_id) / "state.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return {"rounds": {}}

    @staticmethod
    def saved_update(state_root: Path, hospital: str, bounty_id: int, round_: int) -> bytes:
        return (state_root / hospital / str(bounty_id) / f"round-{round_}.safetensors").read_bytes()

    # -- chain ------------------------------------------------------------------------------------------
    def commitment(self, bounty_id: int, round_: int, institution: str, data: bytes) -> bytes:
        """What ``institution`` commits for the update ``data`` (fedcore.commitments: bound to it and the round)."""
        from fedcore.commitments import bind_commitment

        return bind_commitment(chain_id=self.w3.eth.chain_id, contract=self.ledger.address, bounty_id=bounty_id,
                               round_=round_, institution=institution, update_sha256=hashlib.sha256(data).digest())

    def events(self, name: str, bounty_id: int) -> list[dict]:
        event = getattr(self.ledger.contract.events, name)
        logs = event().get_logs(from_block=0, argument_filters={"bountyId": bounty_id})
        return [dict(e["args"], blockNumber=e["blockNumber"], transactionHash=e["transactionHash"].hex()) for e in logs]

    def wait_completed(self, bounty_id: int, *, timeout: float, alive: tuple[Proc, ...] = ()) -> None:
        from ledger.client import BountyStatus

        wait_until(lambda: self.ledger.bounty(bounty_id).status == BountyStatus.COMPLETED, timeout=timeout,
                   what=f"bounty {bounty_id} to complete", alive=alive, interval=0.5)

    # -- what every test checks -------------------------------------------------------------------------
    def check_books(self, bounty_id: int, *, rounds: int) -> dict[str, Any]:
        """Each round opened and finalized exactly once, each (institution, round) committed and scored at most
        once, scored only if committed, credits summing to each round's and the bounty's credited, and
        funded = credited + refunded + escrowed. Returns the credits per institution and the decoded events."""
        from ledger.client import BountyStatus

        bounty = self.ledger.bounty(bounty_id)
        assert bounty.status == BountyStatus.COMPLETED
        assert bounty.rounds_opened == bounty.rounds_finalized == bounty.num_rounds == rounds
        opened = self.events("RoundOpened", bounty_id)
        finalized = self.events("RoundFinalized", bounty_id)
        committed = self.events("UpdateCommitted", bounty_id)
        scored = self.events("ContributionScored", bounty_id)
        assert Counter(e["round"] for e in opened) == {r: 1 for r in range(1, rounds + 1)}, "a round opened twice"
        assert Counter(e["round"] for e in finalized) == {r: 1 for r in range(1, rounds + 1)}, "a round finalized twice"
        assert max(Counter((e["institution"], e["round"]) for e in committed).values()) == 1, "a second commitment"
        assert max(Counter((e["institution"], e["round"]) for e in scored).values()) == 1, "scored twice"
        commits = {(e["institution"], e["round"]): e for e in committed}
        for e in scored:
            assert (e["institution"], e["round"]) in commits, f"{e['institution']} scored in round {e['round']} without committing"
        by_round = {e["round"]: e for e in finalized}
        for r in range(1, rounds + 1):
            round_scored = [e for e in scored if e["round"] == r]
            assert sum(e["credit"] for e in round_scored) == by_round[r]["credited"]
            assert by_round[r]["participants"] == len(round_scored)
            assert by_round[r]["credited"] <= by_round[r]["reward"]
        credits: Counter = Counter()
        for e in scored:
            credits[e["institution"]] += e["credit"]
        assert sum(credits.values()) == bounty.credited
        assert bounty.funded == bounty.credited + bounty.refunded + self.ledger.escrow_of(bounty_id)
        for address, credit in credits.items():
            assert self.ledger.contribution_of(bounty_id, address)[0] == credit
        return {"bounty": bounty, "credits": dict(credits), "opened": opened, "finalized": finalized,
                "committed": committed, "scored": scored}

    def claim_all(self, procs: Processes, bounty_id: int, credits: dict[str, int]) -> dict[str, int]:
        """Every hospital claims through the CLI: exactly its credit, once; a second claim (or a claim with
        nothing credited) is refused with exit code 2 and changes nothing."""
        owed = {h: credits.get(self.hospitals[h].address, 0) for h in self.hospitals}
        claim = {h: ["node", "claim", "--bounty", bounty_id, "--keystore", self.hospitals[h].keystore, *self.chain,
                     "--format", "json"] for h in self.hospitals}
        first = procs.run_all({f"claim-{h}": claim[h] for h in self.hospitals},
                              expect={f"claim-{h}": 0 if owed[h] else 2 for h in self.hospitals})
        paid = {}
        for h in self.hospitals:
            proc = first[f"claim-{h}"]
            if owed[h]:
                paid[h] = json.loads(proc.stdout())["claimed"]
                assert paid[h] == owed[h]
            else:
                assert "nothing to claim" in proc.stderr()
        escrow_before = self.ledger.escrow_of(bounty_id)
        again = procs.run_all({f"claim-again-{h}": claim[h] for h in self.hospitals}, expect=2)
        for proc in again.values():
            assert "nothing to claim" in proc.stderr()
        assert self.ledger.escrow_of(bounty_id) == escrow_before
        claimed = self.events("RewardClaimed", bounty_id)
        assert Counter(e["institution"] for e in claimed) == {self.hospitals[h].address: 1 for h in paid}
        assert {e["institution"]: e["amount"] for e in claimed} == {self.hospitals[h].address: v for h, v in paid.items()}
        for h in self.hospitals:
            assert self.ledger.contribution_of(bounty_id, self.hospitals[h].address)[0] == 0
        bounty = self.ledger.bounty(bounty_id)
        assert bounty.funded == bounty.credited + bounty.refunded + self.ledger.escrow_of(bounty_id)
        return paid

    def audit_verify(self, procs: Processes, bounty_id: int, aggregator_url: str) -> dict:
        proc = procs.run(
            "audit-verify", "audit", "verify", "--bounty", bounty_id, *self.chain, "--aggregator", aggregator_url,
            "--recompute", "--task", self.data / "task.json", "--validation", self.data / "validation.csv",
            "--rules", self.rules, "--format", "json", timeout=300,
        )
        report = json.loads(proc.stdout())
        assert report["verified"] is True, report["reasons"]
        assert report["skipped"] == [] and report["reasons"] == []
        return report


def upload(aggregator, fed, account, bounty_id: int, round_: int, body: bytes, *, signed_hash: bytes | None = None):
    """POST an update as ``account`` would: its sha256 announced and signed over (chain, ledger, bounty, round,
    sha256); ``signed_hash`` announces and signs another hash than the body's."""
    digest = signed_hash or hashlib.sha256(body).digest()
    signature = sign_upload(account, fed.w3.eth.chain_id, fed.ledger.address, bounty_id, round_, digest)
    return aggregator.http.post(f"/bounties/{bounty_id}/rounds/{round_}/updates", content=body,
                                headers={"X-Signature": signature, "X-Update-Sha256": digest.hex(),
                                         "Content-Type": "application/octet-stream"})


def _write_key(path: Path, account) -> Path:
    path.write_text("0x" + bytes(account.key).hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def chain_engine() -> str:
    """The dev chain a module's federation runs on (a module overrides it, e.g. with params, to run on others)."""
    return GANACHE


@pytest.fixture(scope="module")
def federation(tmp_path_factory, chain_engine):
    """A dev chain (``chain_engine``), deployment, Fed-Heart-Disease files, keystores and four joined hospitals: all
    through the CLI."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the end-to-end tests need it (the CLI's chain tools)")
    from ledger.chain import connect
    from ledger.client import FedLedgerClient
    from ledger.deployment import Deployment
    from ledger.devchain import start_chain

    started = time.monotonic()
    root = tmp_path_factory.mktemp(f"federation-{chain_engine}")
    setup = Processes(root / "setup-logs", label="module set-up")
    _ACTIVE.append(setup)
    dev_chain = start_chain(chain_engine)
    fed = None
    try:
        accounts = dev_chain.accounts
        deployment = root / "deployment.json"
        data = root / "heart"
        keys = root / "keys"
        keys.mkdir(mode=0o700)
        setup.run_all({
            "deploy": ["deploy", "--rpc", dev_chain.url, "--deployment", deployment],
            "data-heart": ["data", "heart", "--out", data],
        })
        identities = {"aggregator": accounts[AGGREGATOR_ACCOUNT],
                      **{h: accounts[i] for h, i in HOSPITAL_ACCOUNTS.items()}}
        setup.run_all({
            f"init-{name}": ["node", "init", "--keystore", keys / f"{name}.json",
                             "--import-key-file", _write_key(root / f"{name}.key", account)]
            for name, account in identities.items()
        })
        for name in identities:
            (root / f"{name}.key").unlink()
        setup.run_all({
            f"join-{h}": ["node", "join", "--keystore", keys / f"{h}.json", "--stake", STAKE, "--name", h,
                          "--rpc", dev_chain.url, "--deployment", deployment]
            for h in HOSPITALS
        })
        w3 = connect(dev_chain.url)
        ledger = FedLedgerClient.from_deployment(w3, Deployment.load(deployment))
        mallory, outsider = accounts[MALLORY_ACCOUNT], accounts[OUTSIDER_ACCOUNT]
        ledger.as_sender(mallory).join("mallory", "", stake=ledger.min_stake())
        hospitals = {}
        for h in HOSPITALS:
            csv_path = data / f"{h}.csv"
            rows = len(csv_path.read_text().strip().splitlines()) - 1
            hospitals[h] = Hospital(h, accounts[HOSPITAL_ACCOUNTS[h]].address, keys / f"{h}.json", csv_path, rows)
            assert ledger.institution(hospitals[h].address).registered
        assert not ledger.institution(outsider.address).registered
        fed = Federation(root=root, dev_chain=dev_chain, w3=w3, ledger=ledger, deployment=deployment, data=data, keys=keys,
                         aggregator_keystore=keys / "aggregator.json",
                         aggregator_address=accounts[AGGREGATOR_ACCOUNT].address,
                         sponsor_address=accounts[SPONSOR_ACCOUNT].address, hospitals=hospitals, mallory=mallory,
                         outsider=outsider, setup_seconds=time.monotonic() - started)
        yield fed
    finally:
        if fed is not None:
            for http in fed._http:
                http.close()
        setup.stop_all()
        _ACTIVE.remove(setup)
        dev_chain.stop()
