"""Startup: every check the aggregator makes before it serves, and the objects requests and rounds share.

:func:`build_context` refuses to start, with one line, when the key does not decrypt, the chain or the
deployment is wrong, the bounty does not exist, the key is not the bounty's aggregator, the task spec, the
validation set or the round rules do not hash to what the bounty fixed on chain, or the state directory belongs
to another bounty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from eth_account.signers.local import LocalAccount
from web3 import Web3

from aggregator.service.eligibility import CommitRule
from aggregator.service.gateway import BountyLedger
from aggregator.service.settings import AggregatorSettings
from aggregator.service.state import StateDB
from aggregator.service.store import BlobStore
from fedcore import codec
from fedcore.errors import ConfigError, ContractRevert
from fedcore.keystore import load_keystore
from fedcore.population import ValidationSet, load_validation_set
from fedcore.protocol import CoordinatorPhase
from fedcore.rules import RoundRules, rules_hash, rules_hash_hex
from fedcore.task import TaskSpec, task_hash

log = logging.getLogger("fedledger.aggregator")


@dataclass
class CoordinatorStatus:
    """What the round loop is doing, for ``/health`` (written by the coordinator thread)."""

    running: bool = False
    phase: CoordinatorPhase = CoordinatorPhase.STARTING
    last_error: str | None = None
    updated_at: float = field(default_factory=time.time)

    def set(self, phase: CoordinatorPhase, error: str | None = None) -> None:
        self.phase, self.last_error, self.updated_at = phase, error, time.time()


@dataclass
class ServiceContext:
    """Everything the HTTP handlers and the coordinator share.

    Attributes
    ----------
    settings : AggregatorSettings
    spec : TaskSpec
    expected : dict
        ``{tensor name: (shape, "float32")}`` every update and model must match.
    ledger : BountyLedger
        The bounty on chain, as its aggregator.
    account : LocalAccount
        The aggregator's key.
    state : StateDB
    blobs : BlobStore
    validation : ValidationSet
    rules : RoundRules
        The bounty's round rules (they hash to the bounty's ``rulesHash``).
    clock : callable
        Wall-clock seconds (tests pin it).
    """

    settings: AggregatorSettings
    spec: TaskSpec
    expected: dict[str, tuple[tuple[int, ...], str]]
    ledger: BountyLedger
    account: LocalAccount
    state: StateDB
    blobs: BlobStore
    validation: ValidationSet
    rules: RoundRules
    clock: Callable[[], float] = time.time
    status: CoordinatorStatus = field(default_factory=CoordinatorStatus)
    _initial_model: bytes | None = field(default=None, repr=False)
    _commit_rules: dict[int, CommitRule] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bounty_id(self) -> int:
        return self.settings.bounty_id

    @property
    def chain_id(self) -> int:
        return self.ledger.chain_id

    @property
    def ledger_address(self) -> str:
        return self.ledger.address

    @cached_property
    def update_size(self) -> int:
        """Bytes of every valid update of the task's model (:func:`fedcore.codec.encoded_size`)."""
        return codec.encoded_size(self.expected)

    def now(self) -> int:
        """The latest block's timestamp, or this machine's clock when later and ``settings.wall_clock`` allows it (an
        idle dev chain mines no block, so its time stands still)."""
        now = self.ledger.now()
        return max(now, int(self.clock())) if self.settings.wall_clock else now

    def initial_model(self) -> bytes:
        """Round 1's global model: the task's model initialised from its own seed, as canonical safetensors."""
        with self._lock:
            if self._initial_model is None:
                self._initial_model = initial_model_bytes(self.spec)
            return self._initial_model

    def commit_rule(self, round_: int) -> CommitRule:
        """The contract's commit rule in round ``round_`` (:mod:`aggregator.service.eligibility`), read from the chain
        once per round: every upload of the round is checked against the same numbers."""
        with self._lock:
            rule = self._commit_rules.get(int(round_))
        if rule is None:
            bounty = self.ledger.bounty()
            rule = CommitRule(min_stake=self.ledger.min_stake(), min_reputation=bounty.min_reputation,
                              epsilon_budget=bounty.epsilon_budget)
            with self._lock:
                rule = self._commit_rules.setdefault(int(round_), rule)
        return rule

    def close(self) -> None:
        self.state.close()


def initial_model_bytes(spec: TaskSpec) -> bytes:
    """The task's initial model (:func:`fedcore.models.initial_weights`), as canonical safetensors."""
    from fedcore.models import initial_weights

    return codec.encode(initial_weights(spec))


def expected_tensors(spec: TaskSpec) -> dict[str, tuple[tuple[int, ...], str]]:
    from fedcore.models import build_model, weight_spec

    return weight_spec(build_model(spec, seed=0))


def build_context(
    settings: AggregatorSettings, *, w3: Web3 | None = None, clock: Callable[[], float] = time.time
) -> ServiceContext:
    """Run the startup checks and assemble the shared objects.

    Parameters
    ----------
    settings : AggregatorSettings
    w3 : Web3, optional
        An already connected chain (tests pass the embedded one); otherwise ``settings.rpc`` is connected.

    Raises
    ------
    FedLedgerError
        One line saying what is wrong and, where it can, what to do.
    """
    from ledger.chain import connect
    from ledger.client import BountyStatus, FedLedgerClient
    from ledger.deployment import MAIN_CONTRACT, Deployment

    spec = TaskSpec.load(settings.task_path)
    account = load_keystore(settings.keystore_path, settings.resolve_password())
    if w3 is None:
        w3 = connect(settings.rpc)
    deployment = Deployment.load(settings.deployment, w3)
    client = FedLedgerClient.from_deployment(w3, deployment, sender=account)
    ledger = BountyLedger(client, settings.bounty_id, from_block=deployment.block(MAIN_CONTRACT))
    try:
        bounty = ledger.bounty()
    except ContractRevert as exc:
        if exc.name != "UnknownBounty":
            raise
        bounty = None
    if bounty is None or bounty.status == BountyStatus.NONE:
        raise ConfigError(f"bounty {settings.bounty_id} does not exist on the ledger at {client.address}")
    if Web3.to_checksum_address(bounty.aggregator) != account.address:
        raise ConfigError(
            f"the keystore's account {account.address} is not bounty {settings.bounty_id}'s aggregator "
            f"({bounty.aggregator})"
        )
    if task_hash(spec) != bytes(bounty.task_spec_hash):
        raise ConfigError(
            f"task spec {settings.task_path} hashes to 0x{task_hash(spec).hex()} but bounty {settings.bounty_id} "
            f"has taskSpecHash 0x{bytes(bounty.task_spec_hash).hex()}"
        )
    validation = load_validation_set(settings.validation_path, spec)
    if validation.sha256 != bytes(bounty.validation_set_hash):
        raise ConfigError(
            f"validation set {settings.validation_path} hashes to 0x{validation.sha256.hex()} but bounty "
            f"{settings.bounty_id} has validationSetHash 0x{bytes(bounty.validation_set_hash).hex()}"
        )
    rules = RoundRules.load(settings.rules_path)
    if rules_hash(rules) != bytes(bounty.rules_hash):
        raise ConfigError(
            f"round rules {settings.rules_path} hash to {rules_hash_hex(rules)} but bounty {settings.bounty_id} "
            f"has rulesHash 0x{bytes(bounty.rules_hash).hex()}"
        )
    from aggregator.rules import strategy_from_rules

    strategy_from_rules(rules)  # refuse rules this build cannot run now, not in round 1
    state = StateDB(settings.state_dir)
    state.bind({"chain_id": ledger.chain_id, "ledger": client.address, "bounty_id": settings.bounty_id,
                "aggregator": account.address})
    state.set_meta("num_rounds", bounty.num_rounds)
    blobs = BlobStore(settings.state_dir)
    context = ServiceContext(
        settings=settings, spec=spec, expected=expected_tensors(spec), ledger=ledger, account=account, state=state,
        blobs=blobs, validation=validation, rules=rules, clock=clock,
    )
    log.info("aggregator %s ready for bounty %s on chain %s (ledger %s), %d validation rows",
             account.address, settings.bounty_id, ledger.chain_id, client.address, len(validation))
    return context

