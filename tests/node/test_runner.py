"""The institution's round loop against the embedded chain and a stand-in aggregator served over real HTTP.

The stand-in implements the aggregator's HTTP API minimally (health, task, current round, model, signed
uploads) and records every request it receives. It never touches the chain: the test thread plays the
aggregator on chain (open, finalize) between the node's polls, through the runner's ``sleep`` hook.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from eth_account import Account
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from web3 import Web3

from aggregator.rules import resolve_rules
from fedcore.codec import decode, encode, update_hash, update_hash_hex
from fedcore.commitments import bind_commitment
from fedcore.errors import DataError, NodeError
from fedcore.models import build_model, get_weights
from fedcore.protocol import ErrorBody, FitConfig, Health, RejectionCode, RoundInfo, RoundStatus, UploadAccepted
from fedcore.rules import rules_hash
from fedcore.seeds import training_seed
from fedcore.signing import recover_upload_signer
from fedcore.tables import read_task_table
from fedcore.task import TaskSpec, TrainingSettings, task_hash
from ledger.chain import advance_time, connect, fund_account, latest_timestamp
from ledger.client import ETH, BountyParams, FedLedgerClient, epsilon_units
from ledger.deployment import deploy_fedledger
from ledger.devchain import free_port
from node import runner as runner_module
from node.remote import AggregatorClient, AggregatorRefused, AggregatorUnavailable
from node.runner import ModelMismatch, NodeRoundStatus, NodeRunner
from node.site import load_site
from node.training import train_local

MIN_STAKE = 10**16
WINDOW = 600
SPEC = TaskSpec(
    name="node-test",
    model="logreg",
    feature_columns=("f2", "f0", "f1"),  # not the file's column order
    label_column="label",
    training=TrainingSettings(local_steps=12, batch_size=8, lr=0.1, seed=5),
)
RULES = resolve_rules(spec=SPEC, seed=3)


# -- site data ----------------------------------------------------------------------------------------------
def write_site_csv(path: Path, rows: int = 40, seed: int = 0) -> Path:
    """A site CSV with an id column (text, never parsed), the task's columns in another order, and a note."""
    rng = np.random.default_rng(seed)
    lines = ["patient_id,f0,f1,label,f2,note"]
    for i in range(rows):
        f = rng.normal(size=3) * 10 + 50
        label = int(f[0] + f[2] > 100)
        lines.append(f"patient-{seed}-{i:04d},{f[0]:.6f},{f[1]:.6f},{label},{f[2]:.6f},confidential-note-{i}")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the stand-in aggregator ----------------------------------------------------------------------------------
class StandIn:
    """Minimal aggregator HTTP API; records every request (method, path, headers, body)."""

    def __init__(self, *, bounty_id: int, chain_id: int, ledger: str, spec: TaskSpec):
        self.bounty_id = bounty_id
        self.chain_id = chain_id
        self.ledger = ledger
        self.task = spec.to_dict()
        self.rules = RULES.to_dict()
        self.round = 0
        self.status = RoundStatus.WAITING
        self.fit_config = FitConfig()
        self.model = b""
        self.model_header: str | None = None  # what X-Model-Sha256 says (default: the true hash)
        self.announced: str | None = None  # what rounds/current says the global hash is (default: the true one)
        self.commit_deadline = 0
        self.selected: list[str] = []
        self.requests: list[dict] = []
        self.uploads: list[tuple[int, str, bytes]] = []
        self.stored: dict[str, bytes] = {}  # models published by finalized rounds, by sha256
        self.refuse_uploads: tuple[RejectionCode, str] | None = None
        self.app = self._build()

    def open(self, round_: int, model: bytes, deadline: int) -> None:
        self.round, self.status, self.model, self.commit_deadline = round_, RoundStatus.OPEN, model, deadline
        self.model_header = self.announced = None

    def _build(self) -> FastAPI:
        app = FastAPI()

        def refuse(code: RejectionCode, detail: str) -> JSONResponse:
            status = {RejectionCode.BAD_SIGNATURE: 401, RejectionCode.MALFORMED: 400}.get(code, 409)
            return JSONResponse(ErrorBody(detail=detail, code=code).model_dump(mode="json"), status_code=status)

        async def record(request: Request) -> bytes:
            body = await request.body()
            self.requests.append(
                {"method": request.method, "path": request.url.path, "headers": dict(request.headers), "body": body}
            )
            return body

        @app.get("/health")
        async def health(request: Request):
            await record(request)
            return Health(bounty_id=self.bounty_id, chain_id=self.chain_id, ledger=self.ledger, aggregator=self.ledger,
                          coordinator="waiting").model_dump(mode="json")

        @app.get("/bounties/{bounty_id}/task")
        async def task(bounty_id: int, request: Request):
            await record(request)
            return self.task

        @app.get("/bounties/{bounty_id}/rules")
        async def rules(bounty_id: int, request: Request):
            await record(request)
            return self.rules

        @app.get("/bounties/{bounty_id}/rounds/current")
        async def current(bounty_id: int, request: Request):
            await record(request)
            return RoundInfo(
                bounty_id=self.bounty_id, round=self.round, status=self.status,
                global_model_hash=self.announced or (update_hash_hex(self.model) if self.model else "0x" + "00" * 32),
                commit_deadline=self.commit_deadline, selected=self.selected, fit_config=self.fit_config,
            ).model_dump(mode="json")

        @app.get("/bounties/{bounty_id}/model")
        async def model(bounty_id: int, request: Request):
            await record(request)
            headers = {"X-Model-Sha256": self.model_header or update_hash_hex(self.model), "X-Round": str(self.round)}
            return Response(self.model, media_type="application/octet-stream", headers=headers)

        @app.get("/bounties/{bounty_id}/models/{sha256}")
        async def stored_model(bounty_id: int, sha256: str, request: Request):
            await record(request)
            if sha256 not in self.stored:
                return refuse(RejectionCode.NOT_FOUND, f"no model {sha256}")
            return Response(self.stored[sha256], media_type="application/octet-stream")

        @app.post("/bounties/{bounty_id}/rounds/{round_}/updates")
        async def upload(bounty_id: int, round_: int, request: Request):
            body = await record(request)
            try:
                signer = recover_upload_signer(
                    request.headers.get("x-signature", ""), self.chain_id, self.ledger, bounty_id, round_,
                    hashlib.sha256(body).digest(),
                )
            except DataError as exc:
                return refuse(RejectionCode.BAD_SIGNATURE, str(exc))
            if self.refuse_uploads:
                return refuse(*self.refuse_uploads)
            if any(r == round_ and who == signer for r, who, _ in self.uploads):  # as the service: refused, recorded here
                self.uploads.append((round_, signer, body))
                return refuse(RejectionCode.DUPLICATE_UPLOAD, f"{signer} already has an update accepted in round {round_}")
            if round_ != self.round or self.status != RoundStatus.OPEN:
                return refuse(RejectionCode.ROUND_CLOSED, f"round {round_} is not open for uploads")
            self.uploads.append((round_, signer, body))
            answer = UploadAccepted(sha256=update_hash_hex(body), institution=signer, round=round_)
            return JSONResponse(answer.model_dump(mode="json"), status_code=202)

        return app

    def bodies(self, method: str | None = None) -> list[bytes]:
        return [r["body"] for r in self.requests if method is None or r["method"] == method]


@contextmanager
def serve(app: FastAPI):
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stand-in aggregator did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# -- a federation on the embedded chain -------------------------------------------------------------------
@dataclass
class Federation:
    w3: object
    ledger: FedLedgerClient
    deployment: object
    sponsor: str
    aggregator: str
    insts: list
    bounty_id: int
    standin: StandIn
    url: str
    num_rounds: int
    model: bytes = b""
    finalized: list[int] = field(default_factory=list)
    clients: list = field(default_factory=list)

    def open_round(self) -> int:
        """Open the next round on chain (as the aggregator) and serve its model."""
        r = self.ledger.as_sender(self.aggregator).open_round(self.bounty_id, update_hash(self.model))
        self.standin.open(r, self.model, self.ledger.round(self.bounty_id, r).commit_deadline)
        return r

    def finalize(self) -> None:
        """Finalize the open round with every committed institution scoring 1, and publish a new model."""
        r = self.standin.round
        committed = [a.address for a in self.insts if self.ledger.commitment_of(self.bounty_id, r, a.address) != bytes(32)]
        weights = decode(self.model)
        self.model = encode({k: (v + np.float32(0.01 * r)).astype(np.float32) for k, v in weights.items()})
        self.standin.stored[update_hash_hex(self.model)] = self.model
        self.ledger.as_sender(self.aggregator).finalize_round(
            self.bounty_id, r, update_hash(self.model), {a: 10**18 for a in committed}
        )
        self.standin.status = RoundStatus.FINALIZED
        self.finalized.append(r)

    def drive(self, _seconds: float = 0) -> None:
        """The aggregator's next move, run between the node's polls: finalize the open round, open the next."""
        if self.standin.status == RoundStatus.OPEN:
            self.finalize()
            if len(self.finalized) < self.num_rounds:
                self.open_round()
            else:
                self.standin.status = RoundStatus.COMPLETED

    def commits(self, address: str | None = None) -> list[dict]:
        events = self.ledger.contract.events.UpdateCommitted.get_logs(from_block=0)
        return [dict(e["args"]) for e in events if address is None or e["args"]["institution"] == address]

    def client(self, **kwargs) -> AggregatorClient:
        client = AggregatorClient(self.url, retries=kwargs.pop("retries", 1), backoff=0.01, **kwargs)
        self.clients.append(client)
        return client


def make_federation(standin_url_holder, *, num_rounds: int = 2, institutions: int = 2, spec: TaskSpec = SPEC):
    w3 = connect("embedded")
    gov, sponsor, aggregator = w3.eth.accounts[:3]
    deployment = deploy_fedledger(w3, gov, governance=gov, min_stake=MIN_STAKE, leave_cooldown=86_400)
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    insts = [Account.from_key(bytes([i + 1]) * 32) for i in range(institutions)]
    for inst in insts:
        fund_account(w3, inst.address, 10**18)
        ledger.as_sender(inst).join(f"hospital {inst.address[-4:]}", "", stake=MIN_STAKE)
    params = BountyParams(
        task_spec_hash=task_hash(spec), validation_set_hash=hashlib.sha256(b"validation").digest(),
        rules_hash=rules_hash(RULES),
        aggregator=aggregator, num_rounds=num_rounds, commit_window=WINDOW,
        deadline=latest_timestamp(w3) + 10 * 86_400, token=ETH, epsilon_budget=epsilon_units(spec.privacy.epsilon),
    )
    bounty_id = ledger.as_sender(sponsor).create_bounty(params, 10**17)
    standin = StandIn(bounty_id=bounty_id, chain_id=w3.eth.chain_id, ledger=ledger.address, spec=spec)
    model = encode(get_weights(build_model(spec, seed=1)))
    return Federation(w3, ledger, deployment, sponsor, aggregator, insts, bounty_id, standin, "", num_rounds, model)


def _bound(fed, round_: int, institution: str, data: bytes) -> bytes:
    """The commitment ``institution`` makes for ``data`` in ``round_`` (fedcore.commitments)."""
    return bind_commitment(chain_id=fed.standin.chain_id, contract=fed.standin.ledger, bounty_id=fed.bounty_id,
                           round_=round_, institution=institution, update_sha256=update_hash(data))


@pytest.fixture
def fed():
    federation = make_federation(None)
    with serve(federation.standin.app) as url:
        federation.url = url
        yield federation
        for client in federation.clients:
            client.close()


@pytest.fixture
def site(tmp_path):
    return load_site(write_site_csv(tmp_path / "site.csv"), SPEC)


def new_runner(fed: Federation, site, state_dir: Path, inst: int = 0, **kwargs) -> NodeRunner:
    kwargs.setdefault("sleep", fed.drive)
    return NodeRunner(
        ledger=fed.ledger, aggregator=fed.client(), account=fed.insts[inst], bounty_id=fed.bounty_id,
        X=site.X, y=site.y, state_dir=state_dir, poll_seconds=0, progress=False, **kwargs,
    )


def poll(fed: Federation, site, state_dir: Path, inst: int = 0, **kwargs):
    """One poll by a fresh runner, which then lets go of the state folder (as a process that exits)."""
    with new_runner(fed, site, state_dir, inst, **kwargs) as runner:
        return runner.poll_once()


# -- the whole loop -------------------------------------------------------------------------------------------
def test_takes_part_in_every_round_committing_once_and_uploading_exactly_the_committed_bytes(fed, site, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    fed.open_round()
    me = fed.insts[0]
    records = new_runner(fed, site, tmp_path / "state", echo=lines.append).run()

    assert [r.round for r in records] == [1, 2] and all(r.status == NodeRoundStatus.UPLOADED for r in records)
    assert fed.ledger.bounty(fed.bounty_id).status.name == "COMPLETED"
    commits = fed.commits(me.address)
    assert sorted(c["round"] for c in commits) == [1, 2]  # exactly once per round
    for record, commit in zip(records, sorted(commits, key=lambda c: c["round"])):
        saved = (tmp_path / "state" / str(fed.bounty_id) / f"round-{record.round}.safetensors").read_bytes()
        assert record.sha256 == update_hash_hex(saved)
        assert commit["updateHash"] == _bound(fed, record.round, me.address, saved)  # the hash bound to its committer
        assert record.samples == commit["sampleCount"] == site.n_rows
        assert record.commit_tx and record.upload_status == "accepted"
        assert [body for r, who, body in fed.standin.uploads if r == record.round and who == me.address] == [saved]
    # The state folder: one file per round and state.json, private.
    folder = tmp_path / "state" / str(fed.bounty_id)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "round-1.safetensors", "round-2.safetensors", "state.json"]
    state = json.loads((folder / "state.json").read_text())
    assert state["address"] == me.address and state["rounds"]["2"]["status"] == NodeRoundStatus.UPLOADED
    assert (folder / "state.json").stat().st_mode & 0o077 == 0

    # Privacy: GETs carry no body, POST bodies are exactly the update bytes, nothing carries a record.
    assert all(body == b"" for body in fed.standin.bodies("GET"))
    assert fed.standin.bodies("POST") == [body for _, _, body in fed.standin.uploads]
    raw = read_task_table(tmp_path / "site.csv", SPEC.feature_columns, SPEC.label_column, dtype=np.float64)
    first_row = raw.features[0]
    texts = [caplog.text, *lines, *(json.dumps(r["headers"]) for r in fed.standin.requests)]
    for text in texts:
        assert "patient-" not in text and "confidential" not in text
        assert f"{first_row[0]:.6f}" not in text
    for body in fed.standin.bodies():
        assert b"patient-" not in body and first_row.astype(np.float32).tobytes() not in body

    # A restart after the end does nothing.
    again = new_runner(fed, site, tmp_path / "state").run()
    assert again == [] and len(fed.commits(me.address)) == 2


def test_at_the_end_the_node_keeps_its_personalized_model_and_its_gain_over_training_alone(tmp_path):
    from dataclasses import replace

    from fedcore.metrics import accuracy
    from fedcore.models import predict_with_weights
    from fedcore.seeds import personalization_seed
    from fedcore.task import PersonalizationSettings
    from node.personalize import HELD_OUT_FRACTION, validation_splits

    spec = replace(SPEC, personalization=PersonalizationSettings(method="ditto", ditto_lambdas=(0.03, 3.0), validation_splits=2))
    fed = make_federation(None, spec=spec)
    site = load_site(write_site_csv(tmp_path / "site.csv"), spec)
    with serve(fed.standin.app) as url:
        fed.url = url
        fed.open_round()
        lines: list[str] = []
        records = new_runner(fed, site, tmp_path / "state", echo=lines.append).run()
        for client in fed.clients:
            client.close()
    assert [r.status for r in records] == [NodeRoundStatus.UPLOADED] * 2
    folder = tmp_path / "state" / str(fed.bounty_id)
    assert {"global-1.safetensors", "global-2.safetensors", "personal.safetensors", "personal.json"} <= {p.name for p in folder.iterdir()}
    summary = json.loads((folder / "personal.json").read_text())
    final_hash = "0x" + fed.ledger.round(fed.bounty_id, 2).new_model_hash.hex()
    assert summary["final_global_model"] == final_hash and summary["rounds_replayed"] == 2 and summary["method"] == "ditto"
    assert summary["personalized_model"].startswith("ditto lambda=") and summary["alone_model"].startswith("local-only ")
    assert summary["held_out_rows"] == round(HELD_OUT_FRACTION * site.n_rows) and summary["train_rows"] == site.n_rows - summary["held_out_rows"]
    assert summary["gain"] == pytest.approx(summary["accuracy_personalized"] - summary["accuracy_alone"])
    # The kept model is the one measured: its accuracy on the held-out rows is the recorded one.
    (_, held), = validation_splits(site.y, fraction=HELD_OUT_FRACTION, splits=1, seed=personalization_seed(spec.training.seed, "held-out"))
    weights = decode((folder / "personal.safetensors").read_bytes())
    assert accuracy(site.y[held], predict_with_weights(spec, weights, site.X[held])) == summary["accuracy_personalized"]
    assert any("personalized model" in line and "held-out rows" in line for line in lines)
    # Nothing extra left the node: its only POSTs are the two committed updates.
    assert len(fed.standin.bodies("POST")) == 2
    # The institution sees its gain in `node status`.
    from node.cli import _gain

    assert _gain(summary).startswith(f"{summary['gain']:+.3f} (") and _gain(None) == ""


def test_under_dp_the_node_declares_its_epsilon_and_refuses_to_train_past_the_budget(tmp_path):
    """The task's budget covers one round; the bounty has two. Round 1: the node trains with DP-SGD and declares its
    cumulative epsilon (Opacus's accountant) with its commitment. Round 2 would overspend: the node stops with one
    clear line before downloading or training anything, and neither its state nor the chain changes."""
    from dataclasses import replace

    from fedcore.task import PrivacySettings
    from node.privacy import PrivacyBudgetExceeded, epsilon_spent

    spec = replace(SPEC, privacy=PrivacySettings(epsilon=1.0, delta=1e-4, max_grad_norm=1.0, rounds=1))
    federation = make_federation(None, spec=spec)
    with serve(federation.standin.app) as url:
        federation.url = url
        site = load_site(write_site_csv(tmp_path / "site.csv"), spec)
        me = federation.insts[0]
        federation.open_round()
        with pytest.raises(PrivacyBudgetExceeded) as refused:
            new_runner(federation, site, tmp_path / "state").run()
        assert federation.finalized == [1] and federation.standin.round == 2  # round 1 done, round 2 open
        spent = epsilon_spent(spec.privacy, spec.training, site.n_rows, 1)
        assert 0.9 < spent <= 1.0
        assert str(refused.value).startswith("privacy budget exhausted: another round would bring epsilon to ")
        assert "\n" not in str(refused.value) and "above the bounty's 1 (after 1 rounds)" in str(refused.value)
        [commit] = federation.commits(me.address)
        assert commit["round"] == 1 and commit["epsilon"] == epsilon_units(spent) <= federation.ledger.bounty(federation.bounty_id).epsilon_budget
        state = json.loads((tmp_path / "state" / str(federation.bounty_id) / "state.json").read_text())
        assert list(state["rounds"]) == ["1"] and state["rounds"]["1"]["epsilon"] == spent
        assert sorted(p.name for p in (tmp_path / "state" / str(federation.bounty_id)).iterdir()) == [
            ".lock", "round-1.safetensors", "state.json"]
        models_served = len([r for r in federation.standin.requests if r["path"].endswith("/model")])
        with pytest.raises(PrivacyBudgetExceeded):  # a restart refuses the same way, and downloads nothing
            new_runner(federation, site, tmp_path / "state").run()
        assert len([r for r in federation.standin.requests if r["path"].endswith("/model")]) == models_served
        assert json.loads((tmp_path / "state" / str(federation.bounty_id) / "state.json").read_text()) == state
        assert len(federation.commits(me.address)) == 1
        for client in federation.clients:
            client.close()


def test_training_is_deterministic_with_the_documented_seed(fed, site, tmp_path):
    fed.open_round()
    me = fed.insts[0]
    record = poll(fed, site, tmp_path / "s")
    seed = training_seed(SPEC.training.seed, 1, Web3.to_checksum_address(me.address))
    assert seed != training_seed(SPEC.training.seed, 1, Web3.to_checksum_address(fed.insts[1].address))
    expected = encode(train_local(decode(fed.model), site.X, site.y, SPEC, seed=seed).arrays)
    assert record.sha256 == update_hash_hex(expected)


def test_two_institutions_each_commit_their_own_update(fed, site, tmp_path):
    fed.open_round()
    first = poll(fed, site, tmp_path / "a", inst=0)
    second = poll(fed, site, tmp_path / "b", inst=1)
    assert first.status == second.status == NodeRoundStatus.UPLOADED and first.sha256 != second.sha256
    assert {u[1] for u in fed.standin.uploads} == {fed.insts[0].address, fed.insts[1].address}


def test_a_gasless_node_signs_its_commitment_and_hands_it_over_with_the_upload(fed, site, tmp_path):
    fed.open_round()
    record = poll(fed, site, tmp_path / "state", gasless=True)
    assert record.status == NodeRoundStatus.UPLOADED and record.commit_tx is None
    assert _post_handed_over_commitment(fed, site) == 0  # no privacy budget: nothing declared


def test_a_gasless_node_on_a_dp_bounty_signs_its_declared_epsilon(tmp_path):
    """Under DP the signed commitment carries the same cumulative epsilon a commit of one's own declares, and the
    aggregator's batch puts it on chain within the bounty's budget."""
    from dataclasses import replace

    from fedcore.task import PrivacySettings
    from node.privacy import epsilon_spent

    spec = replace(SPEC, privacy=PrivacySettings(epsilon=1.0, delta=1e-4, max_grad_norm=1.0, rounds=1))
    federation = make_federation(None, spec=spec)
    with serve(federation.standin.app) as url:
        federation.url = url
        site = load_site(write_site_csv(tmp_path / "site.csv"), spec)
        federation.open_round()
        record = poll(federation, site, tmp_path / "state", gasless=True)
        assert record.status == NodeRoundStatus.UPLOADED and record.commit_tx is None
        declared = _post_handed_over_commitment(federation, site)
        assert declared == epsilon_units(epsilon_spent(spec.privacy, spec.training, site.n_rows, 1)) > 0
        assert declared <= federation.ledger.bounty(federation.bounty_id).epsilon_budget
        for client in federation.clients:
            client.close()


def _post_handed_over_commitment(fed, site) -> int:
    """Check the gasless commitment institution 0 handed over with its round-1 upload (no transaction of its own,
    signed by it over what it uploaded), post it as the aggregator does and return the epsilon recorded on chain."""
    from fedcore.commitments import recover_commitment_signer
    from ledger.client import SignedCommitment

    me = fed.insts[0]
    assert fed.commits(me.address) == []  # no transaction of its own
    (upload,) = [r for r in fed.standin.requests if r["method"] == "POST"]
    signature = bytes.fromhex(upload["headers"]["x-commitment-signature"][2:])
    samples, declared = int(upload["headers"]["x-sample-count"]), int(upload["headers"]["x-declared-epsilon"])
    commitment = _bound(fed, 1, me.address, upload["body"])
    assert samples == site.n_rows
    assert recover_commitment_signer(signature, chain_id=fed.standin.chain_id, contract=fed.standin.ledger,
                                     bounty_id=fed.bounty_id, round_=1, commitment=commitment,
                                     sample_count=samples, declared_epsilon=declared) == me.address
    # What it handed over is what the aggregator posts for it, and the contract records it as its commitment.
    fed.ledger.as_sender(fed.aggregator).commit_updates_signed(
        fed.bounty_id, 1, [SignedCommitment(me.address, commitment, samples, signature, declared)])
    assert fed.ledger.commitment_of(fed.bounty_id, 1, me.address) == commitment
    (event,) = fed.commits(me.address)
    assert event["epsilon"] == declared
    return declared


# -- refusing a model that is not the chain's ----------------------------------------------------------------
@pytest.mark.parametrize("tamper", ["served-bytes", "header", "announced"])
def test_a_model_whose_hash_differs_from_the_chain_is_refused_before_training(fed, site, tmp_path, monkeypatch, tamper):
    fed.open_round()
    other = encode({k: v + np.float32(1) for k, v in decode(fed.model).items()})
    if tamper == "served-bytes":
        fed.standin.model = other  # consistent header, but not the model the chain announced
    elif tamper == "header":
        fed.standin.model_header = update_hash_hex(other)  # right bytes, wrong claim
    else:
        fed.standin.announced = update_hash_hex(other)

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained on a model the chain did not announce")

    monkeypatch.setattr(runner_module, "train_local", must_not_train)
    with pytest.raises(ModelMismatch, match="refusing to train") as info:
        new_runner(fed, site, tmp_path / "s").run()
    assert "\n" not in str(info.value)
    assert fed.commits() == [] and fed.standin.uploads == []
    assert not (tmp_path / "s" / str(fed.bounty_id) / "round-1.safetensors").exists()


def test_a_task_spec_that_is_not_the_chain_s_is_refused(fed, site, tmp_path):
    fed.standin.task = SPEC.with_training(lr=0.5).to_dict()
    fed.open_round()
    with pytest.raises(NodeError, match="task spec .* hashes to .* refusing"):
        new_runner(fed, site, tmp_path / "s").run()
    assert fed.commits() == []


@pytest.mark.parametrize("change", [{"seed": 99}, {"estimator": "loo", "estimator_params": {}}],
                         ids=["another scoring seed", "another scorer"])
def test_round_rules_that_are_not_the_chain_s_are_refused_before_training(fed, site, tmp_path, change):
    fed.standin.rules = {**RULES.to_dict(), **change}
    fed.open_round()
    with pytest.raises(NodeError, match="round rules .* hash to .* chain fixed .* refusing"):
        new_runner(fed, site, tmp_path / "s").run()
    assert fed.commits() == [] and fed.standin.uploads == []


def test_a_fit_config_other_than_the_rules_is_refused(fed, site, tmp_path):
    fed.standin.fit_config = FitConfig(fedprox_mu=3.0)  # the rules say plain FedAvg
    fed.open_round()
    with pytest.raises(NodeError, match="fit config .* rules say .* refusing"):
        poll(fed, site, tmp_path / "s")
    assert fed.commits() == []


def test_an_aggregator_for_another_bounty_is_refused(fed, site, tmp_path):
    fed.standin.bounty_id = fed.bounty_id + 7
    with pytest.raises(NodeError, match="serves bounty"):
        poll(fed, site, tmp_path / "s")


# -- crash safety --------------------------------------------------------------------------------------------
class Crash(Exception):
    pass


def crash_at(stage: str):
    def hook(at: str, round_: int) -> None:
        if at == stage:
            raise Crash(f"simulated crash after {stage} in round {round_}")

    return hook


def test_crash_after_commit_before_upload_then_restart_uploads_without_a_second_commit(fed, site, tmp_path, monkeypatch):
    fed.open_round()
    me = fed.insts[0]
    with pytest.raises(Crash):
        new_runner(fed, site, tmp_path / "s", hook=crash_at("committed")).run()
    assert len(fed.commits(me.address)) == 1 and fed.standin.uploads == []

    monkeypatch.setattr(runner_module, "train_local", lambda *a, **k: pytest.fail("retrained after a commit"))
    record = poll(fed, site, tmp_path / "s")
    assert record.status == NodeRoundStatus.UPLOADED and record.resumed
    saved = (tmp_path / "s" / str(fed.bounty_id) / "round-1.safetensors").read_bytes()
    assert record.sha256 == update_hash_hex(saved)
    assert fed.commits(me.address)[0]["updateHash"] == _bound(fed, 1, me.address, saved)
    assert fed.standin.uploads == [(1, me.address, saved)]
    assert len(fed.commits(me.address)) == 1  # never committed twice


def test_crash_after_saving_before_commit_reuses_the_saved_bytes(fed, site, tmp_path, monkeypatch):
    fed.open_round()
    me = fed.insts[0]
    with pytest.raises(Crash):
        poll(fed, site, tmp_path / "s", hook=crash_at("saved"))
    assert fed.commits() == []
    saved = (tmp_path / "s" / str(fed.bounty_id) / "round-1.safetensors").read_bytes()
    monkeypatch.setattr(runner_module, "train_local", lambda *a, **k: pytest.fail("retrained the saved update"))
    record = poll(fed, site, tmp_path / "s")
    assert record.status == NodeRoundStatus.UPLOADED and record.resumed and record.sha256 == update_hash_hex(saved)
    assert len(fed.commits(me.address)) == 1


def test_uploading_the_same_bytes_again_is_harmless(fed, site, tmp_path):
    fed.open_round()
    me = fed.insts[0]
    first = poll(fed, site, tmp_path / "s")
    # A crash between the upload and its record: the state still says "committed".
    state_path = tmp_path / "s" / str(fed.bounty_id) / "state.json"
    state = json.loads(state_path.read_text())
    state["rounds"]["1"].update(status="committed", upload_status=None)
    state_path.write_text(json.dumps(state))
    second = poll(fed, site, tmp_path / "s")
    assert second.status == NodeRoundStatus.UPLOADED and second.sha256 == first.sha256
    assert second.upload_status == "duplicate"  # recognised by RejectionCode.DUPLICATE_UPLOAD
    assert [u[2] for u in fed.standin.uploads] == [u[2] for u in fed.standin.uploads[:1]] * 2
    assert len(fed.commits(me.address)) == 1


def test_a_commitment_without_saved_bytes_is_never_committed_again(fed, site, tmp_path):
    fed.open_round()
    me = fed.insts[0]
    with pytest.raises(Crash):
        poll(fed, site, tmp_path / "lost", hook=crash_at("committed"))
    record = poll(fed, site, tmp_path / "fresh")  # a new state folder: the bytes are elsewhere
    assert record.status == NodeRoundStatus.LOST and fed.standin.uploads == []
    assert len(fed.commits(me.address)) == 1


def test_an_upload_refused_by_the_aggregator_is_recorded(fed, site, tmp_path):
    fed.open_round()
    fed.standin.refuse_uploads = (RejectionCode.MALFORMED, "update rejected: tensor 'linear.bias' contains NaN")
    record = poll(fed, site, tmp_path / "s")
    assert record.status == "rejected" and record.upload_status.startswith("refused 400: update rejected")


def test_aggregator_outages_mid_run_are_waited_out_and_the_upload_retried(fed, site, tmp_path):
    fed.open_round()
    client = fed.client()
    polls, uploads = client.current_round, client.upload
    poll_fails = iter([False, False, True, True])  # the 3rd and 4th polls find the aggregator down
    upload_fails = iter([True])  # the first upload does not get through

    def flaky_poll(bounty_id):
        if next(poll_fails, False):
            raise AggregatorUnavailable("aggregator at x unreachable (test)")
        return polls(bounty_id)

    def flaky_upload(*args, **kwargs):
        if next(upload_fails, False):
            raise AggregatorUnavailable("aggregator at x unreachable (test)")
        return uploads(*args, **kwargs)

    client.current_round, client.upload = flaky_poll, flaky_upload

    def patient_aggregator(_seconds):  # closes a round only once it has the upload
        if any(r == fed.standin.round for r, _, _ in fed.standin.uploads):
            fed.drive()

    lines: list[str] = []
    runner = NodeRunner(ledger=fed.ledger, aggregator=client, account=fed.insts[0], bounty_id=fed.bounty_id, X=site.X,
                        y=site.y, state_dir=tmp_path / "s", progress=False, poll_seconds=0, sleep=patient_aggregator,
                        echo=lines.append)
    records = runner.run()
    assert [(r.round, r.status) for r in records] == [(1, NodeRoundStatus.UPLOADED), (2, NodeRoundStatus.UPLOADED)] and records[0].resumed
    assert len(fed.commits(fed.insts[0].address)) == 2 and len(fed.standin.uploads) == 2
    assert any("upload failed, will retry" in line for line in lines)
    assert any("unreachable, waiting" in line for line in lines)


def test_a_round_that_closes_before_the_upload_gets_through_is_recorded(fed, site, tmp_path):
    fed.open_round()
    client = fed.client()

    def down(*args, **kwargs):
        raise AggregatorUnavailable("aggregator at x unreachable (test)")

    client.upload = down
    runner = NodeRunner(ledger=fed.ledger, aggregator=client, account=fed.insts[0], bounty_id=fed.bounty_id, X=site.X,
                        y=site.y, state_dir=tmp_path / "s", progress=False, poll_seconds=0, sleep=fed.drive)
    records = runner.run()
    assert [(r.round, r.status) for r in records] == [(1, NodeRoundStatus.NOT_UPLOADED), (2, NodeRoundStatus.NOT_UPLOADED)]
    assert all(r.sha256 and r.commit_tx for r in records) and len(fed.commits()) == 2


def test_an_outage_longer_than_the_patience_stops_the_run(fed, site, tmp_path):
    fed.open_round()
    client = fed.client()
    polls = client.current_round
    calls = iter(range(100))

    def down_after_the_first_poll(bounty_id):
        if next(calls) > 0:
            raise AggregatorUnavailable("aggregator at x unreachable (test)")
        return polls(bounty_id)

    client.current_round = down_after_the_first_poll
    runner = NodeRunner(ledger=fed.ledger, aggregator=client, account=fed.insts[0], bounty_id=fed.bounty_id, X=site.X,
                        y=site.y, state_dir=tmp_path / "s", progress=False, poll_seconds=0, patience=0.0,
                        sleep=lambda s: time.sleep(0.01))
    with pytest.raises(AggregatorUnavailable):
        runner.run()
    assert len(fed.commits()) == 1  # round 1 was done before the outage


# -- rounds the node sits out -----------------------------------------------------------------------------
def test_a_round_it_is_not_selected_for_is_skipped(fed, site, tmp_path):
    fed.open_round()
    fed.standin.selected = [fed.insts[1].address.lower()]
    record = poll(fed, site, tmp_path / "s")
    assert record.status == NodeRoundStatus.NOT_SELECTED and fed.commits() == [] and fed.standin.uploads == []


def test_a_closed_commit_window_is_recorded_as_missed(fed, site, tmp_path):
    fed.open_round()
    advance_time(fed.w3, WINDOW + 5)
    record = poll(fed, site, tmp_path / "s")
    assert record.status == NodeRoundStatus.MISSED and fed.commits() == []


def test_rounds_max_stops_early(fed, site, tmp_path):
    fed.open_round()
    records = new_runner(fed, site, tmp_path / "s", rounds_max=1).run()
    assert [r.round for r in records] == [1] and fed.ledger.bounty(fed.bounty_id).rounds_finalized == 0


# -- guards ---------------------------------------------------------------------------------------------------
def test_state_folder_of_another_identity_or_in_use_is_refused(fed, site, tmp_path):
    fed.open_round()
    poll(fed, site, tmp_path / "s", inst=0)
    with pytest.raises(NodeError, match="belongs to address"):
        poll(fed, site, tmp_path / "s", inst=1)
    holder = new_runner(fed, site, tmp_path / "s", inst=0).open()
    try:
        with pytest.raises(NodeError, match="another node process"):
            new_runner(fed, site, tmp_path / "s", inst=0).open()
    finally:
        holder.close()


def test_an_unregistered_institution_is_told_to_join(fed, site, tmp_path):
    fed.insts.append(Account.from_key(b"\x09" * 32))
    with pytest.raises(NodeError, match="not a registered institution.*node join"):
        new_runner(fed, site, tmp_path / "s", inst=2).open()


def test_site_data_must_fit_the_task(fed, tmp_path):
    X = np.zeros((5, 2), np.float32)
    runner = NodeRunner(ledger=fed.ledger, aggregator=fed.client(), account=fed.insts[0], bounty_id=fed.bounty_id,
                        X=X, y=np.zeros(5), state_dir=tmp_path, progress=False)
    with pytest.raises(NodeError, match="2 feature columns, the task needs 3"):
        runner.open()


# -- the site CSV -------------------------------------------------------------------------------------------
def test_site_csv_is_read_in_the_task_s_column_order_and_scaled_with_the_task_s_scaler(tmp_path):
    from dataclasses import replace

    from fedcore.task import FeatureScaling

    path = tmp_path / "s.csv"
    path.write_text("id,f0,f1,label,f2\nx,1,10,0,100\ny,3,30,1,300\nz,5,50,1,500\n")
    table = read_task_table(path, ("f2", "f0", "f1"), "label")
    assert table.features.tolist() == [[100, 1, 10], [300, 3, 30], [500, 5, 50]] and table.labels.tolist() == [0, 1, 1]
    site = load_site(path, SPEC)
    assert site.feature_names == ("f2", "f0", "f1") and site.X.dtype == np.float32
    np.testing.assert_array_equal(site.X, table.features)  # no scaler declared: the features as they are
    # the sponsor's scaler, never this site's own statistics: the site's rows are not centred on themselves
    scaled = load_site(path, replace(SPEC, scaling=FeatureScaling(mean=(100, 0, 10), std=(200, 1, 10))))
    np.testing.assert_allclose(scaled.X, [[0, 1, 0], [1, 3, 2], [2, 5, 4]], atol=1e-6)


# -- the HTTP client ------------------------------------------------------------------------------------------
HEALTH = Health(bounty_id=1, chain_id=1337, ledger="0x" + "ab" * 20, aggregator="0x" + "cd" * 20, coordinator="waiting")


def test_client_retries_connection_errors_with_backoff():
    calls, waits = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=HEALTH.model_dump(mode="json"))

    client = AggregatorClient("http://agg", transport=httpx.MockTransport(handler), backoff=0.1, sleep=waits.append)
    assert client.health() == HEALTH
    assert len(calls) == 3 and waits == [0.1, 0.2]


def test_client_gives_up_after_its_retries_in_one_line():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    client = AggregatorClient("http://agg", transport=httpx.MockTransport(handler), retries=2, sleep=lambda s: None)
    with pytest.raises(AggregatorUnavailable, match=r"unreachable .* after 3 attempts") as info:
        client.current_round(1)
    assert "\n" not in str(info.value)


def test_client_retries_503_and_maps_4xx_detail_and_code():
    refusal = ErrorBody(detail="signer 0xabc was\nnot selected", code=RejectionCode.NOT_SELECTED)
    answers = iter([httpx.Response(503), httpx.Response(403, json=refusal.model_dump(mode="json")),
                    httpx.Response(403, text="<html>forbidden by a proxy</html>")])
    client = AggregatorClient("http://agg", transport=httpx.MockTransport(lambda r: next(answers)), sleep=lambda s: None)
    with pytest.raises(AggregatorRefused) as info:
        client.upload(1, 2, b"bytes", "0x00")
    assert info.value.status == 403 and info.value.code == RejectionCode.NOT_SELECTED and str(info.value) == (
        "aggregator refused the update for bounty 1 round 2: 403 signer 0xabc was not selected"
    )
    with pytest.raises(AggregatorRefused) as info:  # not the protocol's body: no code, the status line
        client.upload(1, 2, b"bytes", "0x00")
    assert info.value.code is None and str(info.value).endswith("403 Forbidden")


def test_client_sends_the_update_bytes_as_the_whole_body():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = UploadAccepted(sha256=update_hash_hex(b"\x00update-bytes"), institution="0x" + "ab" * 20, round=4)
        return httpx.Response(202, json=answer.model_dump(mode="json"))

    client = AggregatorClient("http://agg", transport=httpx.MockTransport(handler))
    assert client.upload(3, 4, b"\x00update-bytes", "0xsig").sha256 == update_hash_hex(b"\x00update-bytes")
    (request,) = seen
    assert request.url.path == "/bounties/3/rounds/4/updates" and request.content == b"\x00update-bytes"
    assert request.headers["x-signature"] == "0xsig"


def test_client_refuses_an_oversized_model():
    client = AggregatorClient(
        "http://agg", max_model_bytes=10, transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * 11))
    )
    with pytest.raises(NodeError, match="over the limit"):
        client.model(1)


def test_client_rejects_malformed_round_answers_and_urls():
    client = AggregatorClient("http://agg", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"x": 1})))
    with pytest.raises(NodeError, match="malformed answer"):
        client.current_round(1)
    with pytest.raises(NodeError, match="unsupported aggregator URL"):
        AggregatorClient("ftp://agg")
