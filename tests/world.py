"""A fresh FedLedger world per test (contracts deployed, accounts named), on the embedded chain, Ganache and Anvil.

Every contract test runs on all three backends: the same bytecode must behave the same on eth-tester, Ganache
(Shanghai) and Anvil (Prague).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from fedcore.errors import ContractRevert
from ledger.chain import advance_time, connect, fund_account, latest_timestamp, send_transaction
from ledger.client import ETH, BountyParams, FedLedgerClient, RevenueSplitterClient, TokenClient
from ledger.compile import load_artifact
from ledger.deployment import Deployment, deploy, deploy_fedledger
from ledger.devchain import ANVIL, GANACHE

MIN_STAKE = 10**16
COOLDOWN = 86_400
WINDOW = 600
ONE_ETH = 10**18

# Every JSON-RPC engine the contract and end-to-end tests run on, each with its marker (``-m "not anvil"``);
# the session fixture named after the engine (tests/conftest.py) starts it once.
RPC_ENGINES = [pytest.param(GANACHE, marks=pytest.mark.ganache), pytest.param(ANVIL, marks=pytest.mark.anvil)]


def h(label: str | int) -> bytes:
    """A deterministic 32-byte hash for tests."""
    return hashlib.sha256(str(label).encode()).digest()


@contextmanager
def reverts(name: str, **expected_args):
    """Assert that the block reverts with custom error ``name`` and (a subset of) these arguments."""
    with pytest.raises(ContractRevert) as info:
        yield info
    assert info.value.name == name, f"reverted with {info.value}, expected {name}"
    for key, value in expected_args.items():
        if isinstance(value, bytes):
            value = "0x" + value.hex()  # reverts carry bytes32 arguments as hex strings
        assert info.value.error_args[key] == value, f"{key}: {info.value.error_args[key]!r} != {value!r}"


@dataclass
class World:
    w3: Web3
    ledger: FedLedgerClient
    gov: str
    sponsor: str
    aggregator: str
    outsider: str
    insts: list[str]
    tokens: dict[str, TokenClient] = field(default_factory=dict)
    deployment: Deployment | None = None  # the ledger and its revenue splitter

    def as_(self, who: str) -> FedLedgerClient:
        return self.ledger.as_sender(who)

    @property
    def splitter(self) -> RevenueSplitterClient:
        return RevenueSplitterClient.from_deployment(self.w3, self.deployment)

    def revenue_as(self, who: str) -> RevenueSplitterClient:
        return self.splitter.as_sender(who)

    def now(self) -> int:
        return latest_timestamp(self.w3)

    def advance(self, seconds: int) -> int:
        return advance_time(self.w3, seconds)

    def balance(self, who: str) -> int:
        return self.w3.eth.get_balance(Web3.to_checksum_address(who))

    def join_all(self, stake: int = MIN_STAKE) -> None:
        for inst in self.insts:
            self.as_(inst).join(f"hospital {inst[-4:]}", "ipfs://meta", stake=stake)

    def params(self, *, rounds: int = 2, window: int = WINDOW, deadline_in: int = 10 * 86_400, min_rep: int = 0,
               token: str = ETH, aggregator: str | None = None, scorers: tuple[str, ...] = (),
               quorum: int = 1, epsilon_budget: int = 0) -> BountyParams:
        return BountyParams(
            task_spec_hash=h("task"),
            validation_set_hash=h("validation"),
            rules_hash=h("rules"),
            aggregator=aggregator or self.aggregator,
            num_rounds=rounds,
            commit_window=window,
            deadline=self.now() + deadline_in,
            min_reputation=min_rep,
            token=token,
            scorers=tuple(scorers),
            quorum=quorum,
            epsilon_budget=epsilon_budget,
        )

    def new_bounty(self, funding: int = ONE_ETH, **kwargs) -> int:
        params = self.params(**kwargs)
        if params.token != ETH:
            token = self.token_at(params.token)
            token.as_sender(self.sponsor).mint(self.sponsor, funding)
            token.as_sender(self.sponsor).approve(self.ledger.address, funding)
        return self.as_(self.sponsor).create_bounty(params, funding)

    def token_at(self, address: str) -> TokenClient:
        return next(t for t in self.tokens.values() if t.address == Web3.to_checksum_address(address))

    def keyed(self, label: str, *, join: bool = True):
        """A local account with a private key (to sign EIP-712 data), funded and, by default, joined."""
        account = Account.from_key(h(f"key/{label}"))
        fund_account(self.w3, account.address, ONE_ETH)
        if join:
            self.as_(account).join(label, "", stake=MIN_STAKE)
        return account

    def commit(self, bounty_id: int, round_: int, who: list[str] | None = None, tag: str = "") -> dict[str, bytes]:
        """Each of ``who`` commits a distinct update hash; returns them by address."""
        hashes = {}
        for inst in who if who is not None else self.insts:
            hashes[inst] = h(f"{bounty_id}/{round_}/{inst}/{tag}")
            self.as_(inst).commit_update(bounty_id, round_, hashes[inst], 100)
        return hashes

    def committee_story(self, label: str) -> tuple[int, Any, Any, bytes, bytes]:
        """A 2-round bounty with two keyed scorers and quorum 2: round 1 finalized with one scorer's attestation while
        the other records a dissent, round 2 lapsed. Returns (bounty, scorer, dissenter, digest, dissent digest)."""
        from fedcore.attestations import sign_outcome

        scorer, dissenter = self.keyed(f"{label} scorer", join=False), self.keyed(f"{label} dissenter", join=False)
        bounty = self.new_bounty(rounds=2, scorers=(scorer.address, dissenter.address), quorum=2)
        self.as_(self.aggregator).open_round(bounty, h(f"{label} m0"))
        self.commit(bounty, 1, self.insts[:2])
        participants, ordered = self.ledger.outcome(bounty, 1, {self.insts[0]: 3, self.insts[1]: 1})
        model = h(f"{label} m1")
        signature = sign_outcome(scorer, chain_id=self.w3.eth.chain_id, contract=self.ledger.address, bounty_id=bounty,
                                 round_=1, new_model_hash=model, participants=participants, scores=ordered)
        self.as_(self.aggregator).finalize_round(bounty, 1, model, dict(zip(participants, ordered)), [signature])
        digest = self.ledger.outcome_digest(bounty, 1, model, participants, ordered)
        other = self.ledger.outcome_digest(bounty, 1, model, participants, [o + 1 for o in ordered])
        self.as_(dissenter).record_dissent(bounty, 1, other)
        self.as_(self.aggregator).open_round(bounty, model)
        terms = self.ledger.bounty(bounty)
        advance_time(self.w3, terms.commit_window + terms.recovery_grace + 1)
        self.as_(self.outsider).lapse_round(bounty)  # anyone closes a stalled round
        return bounty, scorer, dissenter, digest, other

    def play_round(self, bounty_id: int, scores: dict[str, int], model: bytes | None = None) -> int:
        """Open the next round, commit for every scored institution, finalize with ``scores``."""
        bounty = self.ledger.bounty(bounty_id)
        previous = bounty.rounds_finalized
        model = model or (self.ledger.round(bounty_id, previous).new_model_hash if previous else h("model-0"))
        round_ = self.as_(self.aggregator).open_round(bounty_id, model)
        self.commit(bounty_id, round_, list(scores))
        self.as_(self.aggregator).finalize_round(bounty_id, round_, h(f"model-{bounty_id}-{round_}"), scores)
        return round_


def deploy_token(w3: Web3, name: str, sender: str) -> TokenClient:
    address, _ = deploy(w3, name, sender=sender, artifact=load_artifact(name))
    return TokenClient(w3, address, sender=sender, artifact=name)


@pytest.fixture(params=["embedded", *RPC_ENGINES])
def chain(request) -> Web3:
    if request.param == "embedded":
        return connect("embedded")
    return connect(request.getfixturevalue(request.param).url)


@pytest.fixture
def world(chain) -> World:
    accounts = chain.eth.accounts
    gov, sponsor, aggregator, outsider = accounts[:4]
    deployment = deploy_fedledger(chain, gov, governance=gov, min_stake=MIN_STAKE, leave_cooldown=COOLDOWN)
    ledger = FedLedgerClient.from_deployment(chain, deployment)
    w = World(chain, ledger, gov, sponsor, aggregator, outsider, list(accounts[4:8]), deployment=deployment)
    w.tokens = {name: deploy_token(chain, name, gov) for name in ("TestToken", "FalseReturningToken", "FeeOnTransferToken")}
    return w


@pytest.fixture
def joined(world) -> World:
    world.join_all()
    return world


def send(world: World, fn, sender: str, value: int = 0):
    """Send a raw contract call (for the attacker contract)."""
    return send_transaction(world.w3, fn, sender, value=value, errors_abi=world.ledger._abi)
