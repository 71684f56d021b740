"""A deployed FedLedger on the embedded chain with a bounty whose aggregator is a keystore account, three
institutions with local keys, a task spec and a validation CSV on disk: everything ``build_context`` checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from web3 import Web3

from aggregator.rounds import compute_round
from aggregator.rules import resolve_rules
from aggregator.service.app import create_app
from aggregator.service.context import ServiceContext, build_context
from aggregator.service.settings import load_settings
from fedcore import codec
from fedcore.commitments import bind_commitment
from fedcore.keystore import create_keystore
from fedcore.protocol import UPDATE_SHA_HEADER
from fedcore.rules import RoundRules, rules_hash
from fedcore.signing import sign_upload
from fedcore.task import TaskSpec, task_hash
from ledger.chain import advance_time, connect, fund_account
from ledger.client import BountyParams, FedLedgerClient
from ledger.deployment import deploy_fedledger

PASSWORD = "correct horse"
MIN_STAKE = 10**16
WINDOW = 600
ONE_ETH = 10**18
SPEC = TaskSpec(name="service-test", model="logreg", feature_columns=("a", "b", "c"), label_column="y")


#: Every route the service serves (its OpenAPI document lists exactly these).
SERVICE_PATHS = {
    "/health", "/bounties/{bounty_id}/task", "/bounties/{bounty_id}/rules", "/bounties/{bounty_id}/rounds/current",
    "/bounties/{bounty_id}/rounds/{round}", "/bounties/{bounty_id}/model", "/bounties/{bounty_id}/models/{sha256}",
    "/bounties/{bounty_id}/states/{sha256}", "/bounties/{bounty_id}/rounds/{round}/updates",
    "/bounties/{bounty_id}/rounds/{round}/updates/{sha256}", "/bounties/{bounty_id}/rounds/{round}/committee/updates",
    "/bounties/{bounty_id}/rounds/{round}/committee/updates/{sha256}",
    "/bounties/{bounty_id}/rounds/{round}/attestations",
}


def local_account(label: str) -> LocalAccount:
    return Account.from_key(hashlib.sha256(f"fedledger-service-test/{label}".encode()).digest())


def validation_csv(path: Path, rows: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    y = (X @ np.array([1.0, -0.5, 0.25]) > 0).astype(int)
    lines = ["a,b,c,y", *(f"{a:.6f},{b:.6f},{c:.6f},{label}" for (a, b, c), label in zip(X, y))]
    path.write_text("\n".join(lines) + "\n")
    return path


class CountingCompute:
    """The real :func:`aggregator.rounds.compute_round`, counting its calls and keeping what it was given."""

    def __init__(self):
        self.calls = 0
        self.inputs = []
        self.rules = []

    def __call__(self, inputs, rules, spec):
        self.calls += 1
        self.inputs.append(inputs)
        self.rules.append(rules)
        return compute_round(inputs, rules, spec)


@dataclass
class Harness:
    w3: Web3
    ledger: FedLedgerClient
    deployment_path: Path
    aggregator: LocalAccount
    insts: list[LocalAccount]
    outsider: LocalAccount
    sponsor: str
    bounty_id: int
    tmp: Path
    task_path: Path
    validation_path: Path
    keystore_path: Path
    rules_path: Path
    contexts: list[ServiceContext] = field(default_factory=list)

    def settings(self, **overrides):
        values = dict(bounty_id=self.bounty_id, task_path=self.task_path, validation_path=self.validation_path,
                      keystore_path=self.keystore_path, rules_path=self.rules_path, password=PASSWORD,
                      deployment=self.deployment_path,
                      state_dir=self.tmp / "state", upload_grace=0, poll_interval=0.05)
        values.update(overrides)
        return load_settings(values, environ={})

    def context(self, **overrides) -> ServiceContext:
        context = build_context(self.settings(**overrides), w3=self.w3)
        # Nobody joins after the world is built: spare eth-tester's slow log scan over the shared chain.
        context.ledger.seed_institutions([i.address for i in self.insts], self.w3.eth.block_number)
        self.contexts.append(context)
        return context

    def client(self, context: ServiceContext) -> TestClient:
        return TestClient(create_app(context=context, run_coordinator=False))

    def as_(self, account) -> FedLedgerClient:
        return self.ledger.as_sender(account)

    def update(self, scale: float = 0.01, *, dtype=np.float32, nan: bool = False, names=("linear.bias", "linear.weight"),
               shapes=((1,), (1, 3))) -> bytes:
        arrays = {name: np.full(shape, scale, dtype=dtype) for name, shape in zip(names, shapes)}
        if nan:
            from safetensors.numpy import save

            arrays[names[0]][...] = np.nan
            return save(arrays)
        return codec.encode(arrays)

    def commit(self, account, round_: int, data: bytes, samples: int = 10) -> None:
        commitment = bind_commitment(chain_id=self.w3.eth.chain_id, contract=self.ledger.address, bounty_id=self.bounty_id,
                                     round_=round_, institution=account.address, update_sha256=hashlib.sha256(data).digest())
        self.as_(account).commit_update(self.bounty_id, round_, commitment, samples)

    def sign(self, account, round_: int, data: bytes, bounty_id: int | None = None) -> str:
        return sign_upload(account, self.w3.eth.chain_id, self.ledger.address, bounty_id or self.bounty_id, round_,
                           hashlib.sha256(data).digest())

    def upload(self, client: TestClient, account, round_: int, data: bytes, *, signature: str | None = "sign",
               bounty_id: int | None = None):
        headers = {"Content-Type": "application/octet-stream", UPDATE_SHA_HEADER: hashlib.sha256(data).hexdigest()}
        if signature == "sign":
            signature = self.sign(account, round_, data, bounty_id)
        if signature is not None:
            headers["X-Signature"] = signature
        return client.post(f"/bounties/{bounty_id or self.bounty_id}/rounds/{round_}/updates", content=data, headers=headers)

    def advance(self, seconds: int = WINDOW + 1) -> int:
        return advance_time(self.w3, seconds)


@dataclass
class World:
    """The chain part shared by every test of this folder: deployed ledger, funded keys, joined institutions."""

    w3: Web3
    ledger: FedLedgerClient
    deployment_path: Path
    aggregator: LocalAccount
    insts: list[LocalAccount]
    outsider: LocalAccount
    sponsor: str
    files: Path
    task_path: Path
    validation_path: Path
    keystore_path: Path

    def rules(self, strategy: str = "fedavg", **strategy_params) -> tuple[RoundRules, Path]:
        """A bounty's round rules and the file they are saved in (one file per distinct rules)."""
        rules = resolve_rules(spec=SPEC, strategy=strategy, strategy_params=strategy_params, seed=11)
        path = self.files / f"rules-{rules_hash(rules).hex()[:16]}.json"
        rules.save(path)
        return rules, path

    def new_bounty(self, *, rounds: int = 2, min_reputation: int = 0, aggregator: str | None = None,
                   rules: RoundRules | None = None, scorers: tuple[str, ...] = (), quorum: int = 1,
                   epsilon_budget: int = 0) -> int:
        params = BountyParams(
            task_spec_hash=task_hash(SPEC), validation_set_hash=hashlib.sha256(self.validation_path.read_bytes()).digest(),
            rules_hash=rules_hash(rules or self.rules()[0]),
            aggregator=aggregator or self.aggregator.address, num_rounds=rounds, commit_window=WINDOW,
            deadline=self.w3.eth.get_block("latest")["timestamp"] + 365 * 86_400, min_reputation=min_reputation,
            scorers=scorers, quorum=quorum, epsilon_budget=epsilon_budget,
        )
        return self.ledger.as_sender(self.sponsor).create_bounty(params, ONE_ETH)

    def harness(self, tmp: Path, *, strategy: str = "fedavg", strategy_params: dict | None = None,
                **bounty_kwargs) -> Harness:
        rules, rules_path = self.rules(strategy, **(strategy_params or {}))
        return Harness(self.w3, self.ledger, self.deployment_path, self.aggregator, self.insts, self.outsider,
                       self.sponsor, self.new_bounty(rules=rules, **bounty_kwargs), tmp, self.task_path,
                       self.validation_path, self.keystore_path, rules_path)


def make_world(files: Path, *, n_insts: int = 3) -> World:
    w3 = connect("embedded")
    gov, sponsor = w3.eth.accounts[:2]
    deployment = deploy_fedledger(w3, gov, governance=gov, min_stake=MIN_STAKE, leave_cooldown=86_400)
    deployment_path = deployment.save(files / "deployment.json")
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    aggregator = local_account("aggregator")
    insts = [local_account(f"inst{i}") for i in range(n_insts)]
    outsider = local_account("outsider")
    for account in [aggregator, *insts, outsider]:
        fund_account(w3, account.address, 10 * ONE_ETH)
    for i, inst in enumerate(insts):
        ledger.as_sender(inst).join(f"hospital {i}", "", stake=MIN_STAKE)
    task_path = files / "task.json"
    SPEC.save(task_path)
    validation_path = validation_csv(files / "validation.csv")
    keystore_path = files / "aggregator.keystore.json"
    create_keystore(keystore_path, PASSWORD, private_key=aggregator.key, scrypt_n=2**4)  # cheap scrypt for tests
    return World(w3, ledger, deployment_path, aggregator, insts, outsider, sponsor, files, task_path, validation_path,
                 keystore_path)


@pytest.fixture(scope="session")
def service_world(tmp_path_factory) -> World:
    """One embedded chain for the folder; each test gets its own bounty (rounds are per bounty) and state dir."""
    return make_world(tmp_path_factory.mktemp("service-world"))


@pytest.fixture
def harness(service_world, tmp_path) -> Harness:
    h = service_world.harness(tmp_path)
    yield h
    for context in h.contexts:
        context.close()


@pytest.fixture
def counting_compute() -> CountingCompute:
    return CountingCompute()


