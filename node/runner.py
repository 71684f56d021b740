"""An institution's participation in one bounty, round after round, crash-safe.

Per open round in which the institution is selected and has not committed yet:

1. download the global model; refuse it unless ``sha256(bytes)`` equals both the aggregator's
   ``X-Model-Sha256`` header and the round's ``global_model_hash`` on chain;
2. decode it and train locally (:func:`node.training.train_local`) with a seed derived from the task
   seed, the round and the institution's address (:func:`fedcore.seeds.training_seed`), so reruns are
   deterministic;
3. encode the update (canonical safetensors) and hash it;
4. save the bytes and a state record atomically (``<state_dir>/<bounty>/round-<r>.safetensors``
   and ``<state_dir>/<bounty>/state.json``) **before** committing;
5. commit the ``sha256`` bound to this institution and round (:func:`fedcore.commitments.bind_commitment`) and
   the sample count on chain (``commitUpdate``);
6. upload the bytes to the aggregator, signed (:func:`fedcore.signing.sign_upload`).

The chain is the truth on restart: if it shows a commitment of this institution for the round,
the node never commits again; if the saved bytes bind to that commitment it (re)uploads them (the
aggregator content-addresses updates, so a second upload of the same bytes is harmless). If the
bytes were saved but never committed, they are reused when they were trained on the same global
model with the same seed (training is deterministic, so they are what retraining would give).

Only the update bytes leave the node; log lines carry round numbers, hashes, sample counts and
aggregate metrics, never records.
"""

from __future__ import annotations

import enum
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount
from web3 import Web3

from fedcore.codec import decode, encode, update_hash, update_hash_hex
from fedcore.commitments import bind_commitment, sign_commitment
from fedcore.errors import ContractRevert, DataError, NodeError
from fedcore.keystore import write_private_file
from fedcore.models import build_model, weight_spec
from fedcore.protocol import RejectionCode, RoundInfo, RoundStatus
from fedcore.rules import RoundRules, rules_hash
from fedcore.seeds import training_seed
from fedcore.signing import sign_upload
from fedcore.task import TaskSpec, task_hash
from ledger.chain import latest_timestamp
from ledger.client import BountyStatus, FedLedgerClient, epsilon_units
from node.privacy import check_budget
from node.remote import AggregatorClient, AggregatorRefused, AggregatorUnavailable
from node.training import settings_with, train_local

log = logging.getLogger("fedledger.node")

STATE_ENV = "FEDLEDGER_NODE_STATE_DIR"
DEFAULT_STATE_ROOT = Path("~/.fedledger/state")
STATE_VERSION = 1
ZERO_HASH = b"\x00" * 32


class NodeRoundStatus(enum.StrEnum):
    """Where this node is in one round (``state.json``'s ``status``); the first two are in progress."""

    SAVED = "saved"  # the update bytes are saved, not committed yet
    COMMITTED = "committed"  # committed on chain, not uploaded yet
    UPLOADED = "uploaded"  # committed on chain and the aggregator accepted the bytes
    REJECTED = "rejected"  # committed, but the aggregator refused the upload (see upload_status)
    NOT_SELECTED = "not-selected"  # the aggregator did not select this institution
    MISSED = "missed"  # the commit window closed before this node could commit
    LOST = "committed-without-bytes"  # the chain holds a commitment, but its bytes are not in the state dir
    NOT_UPLOADED = "not-uploaded"  # committed, but the round closed before an upload got through

Hook = Callable[[str, int], None]


def default_state_dir(address: str) -> Path:
    """``$FEDLEDGER_NODE_STATE_DIR`` if set, else ``~/.fedledger/state/<address>``."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override).expanduser()
    return (DEFAULT_STATE_ROOT / Web3.to_checksum_address(address)).expanduser()


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class ModelMismatch(NodeError):
    """The model the aggregator served is not the one the chain announced for the round."""


@dataclass
class NodeRound:
    """What the node did in one round.

    Attributes
    ----------
    bounty, round : int
    status : NodeRoundStatus
        A final status (``UPLOADED``, ``REJECTED``, ``NOT_SELECTED``, ``MISSED``, ``NOT_UPLOADED``, ``LOST``).
    sha256 : str or None
        The committed update hash (0x hex).
    samples : int or None
        The committed sample count.
    metrics : dict
        Local training metrics (aggregates only: losses, accuracy, steps).
    commit_tx : str or None
        Hash of the ``commitUpdate`` transaction (None if committed by an earlier, crashed run
        whose receipt was not recorded).
    upload_status : str or None
        ``accepted`` (or ``duplicate``), or the aggregator's refusal.
    resumed : bool
        This run finished a round an earlier run had started (saved or committed).
    """

    bounty: int
    round: int
    status: NodeRoundStatus
    sha256: str | None = None
    samples: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    commit_tx: str | None = None
    upload_status: str | None = None
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NodeState:
    """The node's durable record of one bounty: ``<state_dir>/<bounty>/state.json`` and the update files.

    Every write is atomic (temporary file, fsync, rename), so a crash leaves the previous or the new
    version. A lock file keeps two node processes from working on the same bounty in the same folder.
    """

    def __init__(self, state_dir: str | os.PathLike, bounty_id: int, *, address: str, chain_id: int, ledger: str):
        self.root = Path(state_dir).expanduser()
        self.bounty_id = int(bounty_id)
        self.dir = self.root / str(self.bounty_id)
        self.path = self.dir / "state.json"
        self.identity = {
            "bounty": self.bounty_id,
            "address": Web3.to_checksum_address(address),
            "chain_id": int(chain_id),
            "ledger": Web3.to_checksum_address(ledger),
        }
        self._lock_fd: int | None = None
        self.data = self._load()

    # -- file plumbing ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": STATE_VERSION, **self.identity, "rounds": {}}
        except OSError as exc:
            raise NodeError(f"cannot read node state {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("rounds"), dict):
                raise ValueError("no rounds")
        except ValueError:
            raise NodeError(f"malformed node state {self.path}: move it away to start this bounty afresh") from None
        for key, value in self.identity.items():
            if data.get(key) != value:
                raise NodeError(
                    f"node state {self.path} belongs to {key} {data.get(key)}, not {value}: use another --state-dir"
                )
        return data

    def lock(self) -> None:
        """Take the folder's lock (NodeError if another process holds it)."""
        if self._lock_fd is not None:
            return
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise NodeError(f"another node process is working on {self.dir}: stop it first") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _write(self, *, durable: bool = True) -> None:
        text = json.dumps(self.data, indent=1, sort_keys=True) + "\n"
        write_private_file(self.path, text.encode("utf-8"), sync_folder=durable)

    # -- rounds ----------------------------------------------------------------------------------------
    def round(self, round_: int) -> dict[str, Any] | None:
        return self.data["rounds"].get(str(int(round_)))

    def put(self, round_: int, *, durable: bool = True, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into round ``round_``'s record and write state.json atomically (``durable`` False: only
        for what the chain can tell again after a power cut; the next durable write of this folder makes it stick)."""
        record = dict(self.data["rounds"].get(str(int(round_)), {"round": int(round_)}))
        record.update(fields)
        record["updated_at"] = int(time.time())
        self.data["rounds"][str(int(round_))] = record
        self._write(durable=durable)
        return record

    def update_path(self, round_: int) -> Path:
        return self.dir / f"round-{int(round_)}.safetensors"

    def save_update(self, round_: int, data: bytes) -> Path:
        """Write a round's update; its rename is made durable by the state write that records it (same folder)."""
        return write_private_file(self.update_path(round_), bytes(data), sync_folder=False)

    # -- personalization (only when the task declares one) ------------------------------------------
    def save_global(self, round_: int, data: bytes) -> Path:
        """Keep the global model round ``round_`` started from (Ditto replays them at the end); made durable, as the
        update, by the state write that records the round's update (same folder)."""
        return write_private_file(self.dir / f"global-{int(round_)}.safetensors", bytes(data), sync_folder=False)

    def read_globals(self) -> list[bytes]:
        """The kept global models, in round order."""
        paths = sorted(self.dir.glob("global-*.safetensors"), key=lambda path: int(path.stem.split("-")[1]))
        return [path.read_bytes() for path in paths]

    @property
    def personal_path(self) -> Path:
        return self.dir / "personal.json"

    def save_personal(self, model: bytes, summary: Mapping[str, Any]) -> Path:
        """Write the personalized model (``personal.safetensors``) and its metrics (``personal.json``)."""
        write_private_file(self.dir / "personal.safetensors", bytes(model))
        return write_private_file(self.personal_path,
                                  (json.dumps(dict(summary), indent=1, sort_keys=True) + "\n").encode())

    def personal(self) -> dict[str, Any] | None:
        """The personalized model's metrics (``personal.json``), or None before the bounty's end."""
        return read_personal(self.dir)

    def read_update(self, round_: int) -> bytes | None:
        try:
            return self.update_path(round_).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NodeError(f"cannot read saved update {self.update_path(round_)}: {exc.strerror}") from None


def read_personal(bounty_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``<state_dir>/<bounty>/personal.json`` (the institution's own model's metrics), or None if absent."""
    try:
        return json.loads((Path(bounty_dir) / "personal.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise NodeError(f"cannot read {Path(bounty_dir) / 'personal.json'}: "
                        "move it away and run `node train` again") from None


class NodeRunner:
    """One institution taking part in one bounty.

    Parameters
    ----------
    ledger : FedLedgerClient
        The deployed ledger (any sender; transactions are signed with ``account``).
    aggregator : AggregatorClient
        The bounty's aggregator service.
    account : LocalAccount
        The institution's key: signs commits and uploads.
    bounty_id : int
    X : np.ndarray, shape (n, d), float32
        The institution's preprocessed features, columns in the task's ``feature_columns`` order.
    y : np.ndarray, shape (n,)
        0/1 labels.
    state_dir : path, optional
        Durable state (default :func:`default_state_dir`); ``<state_dir>/<bounty>/`` holds it.
    spec : TaskSpec, optional
        The task; fetched from the aggregator when omitted. Checked against the bounty's
        ``task_spec_hash`` on chain either way (unless ``verify_task`` is false).
    poll_seconds : float
        Wait between polls of the aggregator when there is nothing to do.
    rounds_max : int, optional
        Stop after committing in this many rounds (counting rounds finished on resume).
    progress : bool or None
        Show a tqdm bar over the bounty's rounds (None: only on a terminal).
    hook : callable, optional
        ``hook(stage, round)`` after each durable step: ``"saved"``, ``"committed"``, ``"uploaded"``
        (tests use it to simulate a crash).
    echo : callable, optional
        Receives one human-readable line per round event (default: the ``fedledger.node`` logger).
    patience : float
        Seconds of consecutive aggregator outage tolerated by :meth:`run` before giving up.
    stop : threading.Event, optional
        Set it to make :meth:`run` return after the current poll.
    sleep : callable
        Wait function (tests replace it to drive the other parties between polls).
    verify_task : bool
        Check the task spec's hash against the chain.
    trainer : callable, optional
        Local training, ``train_local``-compatible (default :func:`node.training.train_local`); the demo
        plays a free rider with one that returns a zero update.
    """

    def __init__(
        self,
        *,
        ledger: FedLedgerClient,
        aggregator: AggregatorClient,
        account: LocalAccount,
        bounty_id: int,
        X: np.ndarray,
        y: np.ndarray,
        state_dir: str | os.PathLike | None = None,
        spec: TaskSpec | None = None,
        poll_seconds: float = 2.0,
        rounds_max: int | None = None,
        progress: bool | None = None,
        hook: Hook | None = None,
        echo: Callable[[str], None] | None = None,
        patience: float = 600.0,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        verify_task: bool = True,
        trainer: Callable[..., Any] | None = None,
        gasless: bool = False,
    ):
        self.account = account
        self.address = Web3.to_checksum_address(account.address)
        self.ledger = ledger.as_sender(account)
        self.aggregator = aggregator
        self.bounty_id = int(bounty_id)
        self.X = np.asarray(X, dtype=np.float32)
        self.y = np.asarray(y, dtype=np.float32).reshape(-1)
        if self.X.ndim != 2 or self.X.shape[0] != self.y.shape[0] or self.X.shape[0] == 0:
            raise NodeError(f"site data must be X (n, d) and y (n,) with n > 0, got {self.X.shape} and {self.y.shape}")
        self.state_dir = Path(state_dir).expanduser() if state_dir is not None else default_state_dir(self.address)
        self.spec = spec
        self.rules: RoundRules | None = None
        self.poll_seconds = float(poll_seconds)
        self.rounds_max = rounds_max
        self.progress = progress
        self.hook = hook
        self._echo = echo
        self.patience = float(patience)
        self.stop_event = stop or threading.Event()
        self.sleep = sleep
        self.verify_task = verify_task
        self.trainer = trainer or train_local
        self.gasless = bool(gasless)
        self.chain_id = int(self.ledger.w3.eth.chain_id)
        self.records: dict[int, NodeRound] = {}
        self.state: NodeState | None = None
        self.finished: RoundStatus | None = None  # COMPLETED, CANCELLED or EXPIRED once the bounty is over
        self._expected: dict | None = None
        self._bar = None

    # -- set-up --------------------------------------------------------------------------------------
    def echo(self, line: str) -> None:
        if self._echo is not None:
            self._echo(line)
        else:
            log.info("%s", line)

    def open(self) -> NodeRunner:
        """Check the task, the data and the registration; take the state folder's lock."""
        if self.state is not None:
            return self
        bounty = self.ledger.bounty(self.bounty_id)
        if bounty.status == BountyStatus.NONE:
            raise NodeError(f"bounty {self.bounty_id} does not exist on ledger {self.ledger.address}")
        self._check_aggregator()
        if self.spec is None:
            self.spec = self.aggregator.task(self.bounty_id)
        if self.verify_task and task_hash(self.spec) != bytes(bounty.task_spec_hash):
            raise NodeError(
                f"the task spec served for bounty {self.bounty_id} hashes to {_hex(task_hash(self.spec))}, "
                f"but the chain fixed {_hex(bounty.task_spec_hash)}: refusing to train for it"
            )
        self.rules = self.aggregator.rules(self.bounty_id)
        if rules_hash(self.rules) != bytes(bounty.rules_hash):
            raise NodeError(
                f"the round rules served for bounty {self.bounty_id} hash to {_hex(rules_hash(self.rules))}, but the "
                f"chain fixed {_hex(bounty.rules_hash)}: another scorer, seed or strategy than the bounty's; refusing "
                "to train for it"
            )
        if self.X.shape[1] != self.spec.n_features:
            raise NodeError(
                f"site data has {self.X.shape[1]} feature columns, the task needs {self.spec.n_features} "
                f"({', '.join(self.spec.feature_columns)})"
            )
        institution = self.ledger.institution(self.address)
        if not institution.registered:
            raise NodeError(
                f"{self.address} is not a registered institution on ledger {self.ledger.address}: "
                "run `fedledger node join --stake AMOUNT --name NAME` first"
            )
        if institution.reputation < bounty.min_reputation:
            raise NodeError(
                f"bounty {self.bounty_id} needs reputation {bounty.min_reputation}, "
                f"{self.address} has {institution.reputation}"
            )
        self._expected = weight_spec(build_model(self.spec, n_features=self.spec.n_features, seed=0))
        state = NodeState(
            self.state_dir, self.bounty_id, address=self.address, chain_id=self.chain_id, ledger=self.ledger.address
        )
        state.lock()
        self.state = state
        return self

    def _check_aggregator(self) -> None:
        """The aggregator must serve this bounty of this ledger on this chain."""
        health = self.aggregator.health()
        served = {
            "chain id": (health.chain_id, self.chain_id),
            "ledger": (health.ledger, Web3.to_checksum_address(self.ledger.address)),
            "bounty": (health.bounty_id, self.bounty_id),
        }
        for what, (theirs, ours) in served.items():
            if theirs != ours:
                raise NodeError(
                    f"the aggregator at {self.aggregator.base_url} serves {what} {theirs}, not {ours}: "
                    "wrong --aggregator?"
                )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.state is not None:
            self.state.unlock()
            self.state = None

    @property
    def _open_state(self) -> NodeState:
        if self.state is None:
            raise NodeError("the node's state is not open: use the runner in a `with` block")
        return self.state

    def __enter__(self) -> NodeRunner:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> list[NodeRound]:
        """Poll and take part until the bounty is over (completed, cancelled, expired), ``rounds_max``
        is reached, or ``stop`` is set. Returns the round records in round order.

        The aggregator must answer at the start; later outages (connection refused, timeouts, 5xx)
        are waited out for up to ``patience`` seconds, then :class:`AggregatorUnavailable` is raised.
        """
        from tqdm import tqdm

        bounty = self.ledger.bounty(self.bounty_id)
        try:
            # The first contact must succeed (a wrong URL fails fast); later outages are waited out.
            self.open()
            self._bar = tqdm(
                total=bounty.num_rounds, unit="round", desc=f"bounty {self.bounty_id}", leave=True,
                disable=(not self.progress) if self.progress is not None else None,
            )
            outage_since: float | None = None
            while not self.stop_event.is_set():
                try:
                    record = self.poll_once()
                    outage_since = None
                except AggregatorUnavailable as exc:
                    outage_since = outage_since or time.monotonic()
                    if time.monotonic() - outage_since > self.patience:
                        raise
                    self.echo(f"aggregator unreachable, waiting: {exc}")
                    record = None
                if self.finished or self._reached_max():
                    break
                if record is None:
                    self.sleep(self.poll_seconds)
            if self.finished and self._bar is not None:
                self._bar.update(max(0, self._bar.total - self._bar.n))
            if self.finished == RoundStatus.COMPLETED:
                self.personalize()
            return self.results()
        finally:
            self.close()

    def results(self) -> list[NodeRound]:
        return [self.records[r] for r in sorted(self.records)]

    def _reached_max(self) -> bool:
        if self.rounds_max is None:
            return False
        return sum(1 for r in self.records.values() if r.sha256 is not None) >= self.rounds_max

    def _finish_round(self, record: NodeRound) -> NodeRound:
        self.records[record.round] = record
        if self._bar is not None:
            self._bar.update(max(0, record.round - self._bar.n))
            self._bar.set_postfix_str(f"round {record.round}: {record.status}")
        line = f"bounty {record.bounty} round {record.round}: {record.status}"
        if record.sha256:
            line += f" sha256={record.sha256[:18]}… samples={record.samples}"
        if "loss_before" in record.metrics:
            line += f" loss {record.metrics['loss_before']:.4f}->{record.metrics['loss_after']:.4f}"
        if record.upload_status and record.status != NodeRoundStatus.UPLOADED:
            line += f" ({record.upload_status})"
        self.echo(line)
        return record

    def poll_once(self) -> NodeRound | None:
        """Look at the bounty once and do what its current round needs.

        Returns
        -------
        NodeRound or None
            The record of a round this poll finished (participated, resumed, skipped), else None.

        Raises
        ------
        ModelMismatch
            The served model is not the one on chain (nothing was trained or committed).
        NodeError, ChainError
            Anything else that stops this institution from taking part.
        """
        self.open()
        bounty = self.ledger.bounty(self.bounty_id)
        if bounty.status in (BountyStatus.COMPLETED, BountyStatus.CANCELLED):
            self.finished = RoundStatus(bounty.status.name.lower())
            return self._sweep(None)
        info = self.aggregator.current_round(self.bounty_id)
        r = info.round
        if info.status.terminal:
            self.finished = info.status
            return self._sweep(None)
        swept = self._sweep(info)
        if info.status != RoundStatus.OPEN or r < 1 or r in self.records:
            return swept
        chain_round = self.ledger.round(self.bounty_id, r)
        if chain_round.opened_at == 0 or chain_round.finalized:
            return None  # the chain has not caught up with the aggregator, or the round is over
        if not info.selects(self.address):
            return self._finish_round(NodeRound(self.bounty_id, r, NodeRoundStatus.NOT_SELECTED))
        # Only an update this state saved can be committed already (a crash after its commit, or before its record):
        # no need to read the chain otherwise. A commitment made from another state folder (a lost one, another
        # process of this identity) is refused as AlreadyCommitted below, and treated as before: lost.
        saved = self._open_state.round(r)
        commitment = self.ledger.commitment_of(self.bounty_id, r, self.address) if saved else ZERO_HASH
        if commitment != ZERO_HASH:
            return self._resume(r, commitment)
        return self._participate(r, info, chain_round, elsewhere=saved is None)

    def _sweep(self, info: RoundInfo | None) -> NodeRound | None:
        """Record rounds this node committed in (or saved for) that closed before their upload got through
        (``info`` None: the bounty is over, every round is closed)."""
        assert self.state is not None
        last = None
        for key in sorted(self.state.data["rounds"], key=int):
            r, saved = int(key), self.state.data["rounds"][key]
            closed = info is None or r < info.round or (r == info.round and info.status != RoundStatus.OPEN)
            if (r in self.records or not closed
                    or saved.get("status") not in (NodeRoundStatus.SAVED, NodeRoundStatus.COMMITTED)):
                continue
            committed = saved["status"] == NodeRoundStatus.COMMITTED or (
                # a crash between the commit's receipt and its record leaves "saved": ask the chain
                self.ledger.commitment_of(self.bounty_id, r, self.address) != ZERO_HASH
            )
            if committed:
                self.state.put(r, status=NodeRoundStatus.NOT_UPLOADED)
                last = self._finish_round(self._record_from_state(r, resumed=False))
            else:
                self.state.put(r, status=NodeRoundStatus.MISSED)
                last = self._finish_round(replace(self._record_from_state(r, resumed=False),
                                                  upload_status="never committed"))
        return last

    # -- one round -----------------------------------------------------------------------------------
    def _participate(self, r: int, info: RoundInfo, chain_round, *, elsewhere: bool = False) -> NodeRound | None:
        """Train, commit and upload for round ``r`` (``elsewhere``: this state held nothing of the round before)."""
        assert self.state is not None and self.spec is not None
        chain_hash = _hex(chain_round.global_model_hash)
        if info.global_model_hash and info.global_model_hash != chain_hash:
            raise ModelMismatch(
                f"round {r}: the aggregator announces global model {info.global_model_hash} but the chain says "
                f"{chain_hash}: refusing to train"
            )
        if latest_timestamp(self.ledger.w3) > chain_round.commit_deadline:
            return self._finish_round(NodeRound(self.bounty_id, r, NodeRoundStatus.MISSED,
                                                upload_status="commit window closed"))
        seed = training_seed(self.spec.training.seed, r, Web3.to_checksum_address(self.address))
        resumed = False
        saved = self.state.round(r)
        data = self._reusable_update(r, saved, chain_hash, seed)
        if data is not None and saved is not None:
            resumed = True
            sha, samples, metrics = saved["sha256"], int(saved["samples"]), dict(saved.get("metrics") or {})
            self.echo(f"bounty {self.bounty_id} round {r}: reusing the update saved before a restart")
        else:
            config = self._fit_config(r, info)
            privacy = self._privacy_spend(r, config)  # refuses past the budget, before anything is written
            model = self.aggregator.model(self.bounty_id)
            if model.round is not None and model.round != r:
                return None  # the aggregator moved on between the two requests: look again
            self._check_model(r, model.data, model.sha256, chain_hash)
            weights = decode(model.data, expected=self._expected)
            if self.spec.personalization.method != "none":
                self.state.save_global(r, model.data)
            result = self.trainer(weights, self.X, self.y, self.spec, seed=seed, config=config or None)
            data = encode(result.arrays)
            sha, samples, metrics = update_hash_hex(data), int(result.num_samples), dict(result.metrics)
            self.state.save_update(r, data)
            self.state.put(
                r, global_model_hash=chain_hash, seed=seed, sha256=sha, samples=samples, metrics=metrics,
                file=self.state.update_path(r).name, status=NodeRoundStatus.SAVED, commit_tx=None, upload_status=None,
                **privacy,
            )
            self._fire(NodeRoundStatus.SAVED, r)
        if self.gasless:  # the commitment travels signed with the upload; the aggregator posts it in its batch
            return self._upload(r, data, resumed=resumed)
        declared = self._declared_epsilon(r)
        try:
            receipt = self.ledger.commit_update(self.bounty_id, r, self._commitment(r, bytes.fromhex(sha[2:])), samples,
                                                declared)
        except ContractRevert as exc:
            if exc.name == "AlreadyCommitted":  # another process of this identity got there first
                commitment = self.ledger.commitment_of(self.bounty_id, r, self.address)
                if not elsewhere:
                    return self._resume(r, commitment)
                self.state.put(r, status=NodeRoundStatus.LOST)  # not this folder's commitment: never upload for it
                return self._lost(r, commitment)
            if exc.name == "RoundClosed":
                self.state.put(r, status=NodeRoundStatus.MISSED)
                return self._finish_round(NodeRound(
                    self.bounty_id, r, NodeRoundStatus.MISSED, sha, samples, metrics,
                    upload_status="commit window closed", resumed=resumed,
                ))
            raise
        commit_tx = _hex(receipt["transactionHash"])
        # Not durable: lost to a power cut, "saved" reads the commitment back from the chain (poll_once, _sweep).
        self.state.put(r, status=NodeRoundStatus.COMMITTED, commit_tx=commit_tx, upload_status=None, durable=False)
        self._fire(NodeRoundStatus.COMMITTED, r)
        return self._upload(r, data, resumed=resumed)

    # -- the end of the bounty ------------------------------------------------------------------------
    def personalize(self) -> dict[str, Any] | None:
        """Build this institution's own model from the kept global models and its rows, on this machine.

        Runs once the bounty is completed, under the task's personalization (nothing when it declares
        none); the final global model is downloaded by the hash the chain holds for the last round.
        Leaves ``personal.safetensors`` and ``personal.json`` (:func:`node.personalize.held_out_gain`:
        the personalized model against a local-only model, both on a held-out part of its own rows)
        in the state folder. Nothing leaves the node.

        Returns
        -------
        dict or None
            The metrics written to ``personal.json`` (None: no personalization, or no round taken part in).
        """
        from node.personalize import held_out_gain

        state = self._open_state
        assert self.spec is not None
        if self.spec.personalization.method == "none" or state.personal() is not None:
            return state.personal()
        trajectory = [decode(data, expected=self._expected) for data in state.read_globals()]
        if not trajectory:
            return None
        bounty = self.ledger.bounty(self.bounty_id)
        final_hash = _hex(self.ledger.round(self.bounty_id, bounty.num_rounds).new_model_hash)
        data = self.aggregator.model_by_hash(self.bounty_id, final_hash)
        if update_hash_hex(data) != final_hash:
            raise ModelMismatch(f"the final model downloaded hashes to {update_hash_hex(data)}, "
                                f"not to the chain's {final_hash}")
        model, metrics = held_out_gain(trajectory, decode(data, expected=self._expected), self.X, self.y, self.spec,
                                       seed=self.spec.training.seed)
        summary = {**metrics, "method": self.spec.personalization.method, "final_global_model": final_hash,
                   "rounds_replayed": len(trajectory), "model": model.model, "model_params": dict(model.model_params)}
        state.save_personal(encode(model.weights), summary)
        self.echo(f"bounty {self.bounty_id}: personalized model {summary['personalized_model']}: accuracy "
                  f"{metrics['accuracy_personalized']:.3f} vs {metrics['accuracy_alone']:.3f} alone on "
                  f"{metrics['held_out_rows']} held-out rows (gain {metrics['gain']:+.3f})")
        return summary

    def _privacy_spend(self, r: int, config: Mapping[str, Any]) -> dict[str, Any]:
        """Under the task's DP: this round's accountant entry and the cumulative epsilon after it (saved with the
        round and declared on chain with the commitment). Every earlier round this node trained counts, committed
        or not: the spend happened.

        Raises
        ------
        node.privacy.PrivacyBudgetExceeded
            When this round would take the cumulative epsilon past the bounty's budget.
        """
        assert self.spec is not None and self.state is not None
        if not self.spec.privacy.enabled:
            return {}
        history = [tuple(saved["dp_cost"]) for key, saved in self.state.data["rounds"].items()
                   if int(key) != r and saved.get("dp_cost")]
        cost, epsilon = check_budget(self.spec.privacy, settings_with(self.spec.training, config), int(self.y.shape[0]),
                                     history)
        return {"dp_cost": list(cost), "epsilon": epsilon}

    def _fit_config(self, r: int, info: RoundInfo) -> dict[str, Any]:
        """The bounty's rules' fit config; the aggregator must hand out the same (else it plays other rules)."""
        assert self.rules is not None
        config = self.rules.fit_config()
        served = info.fit_config.overrides()
        if served != config:
            raise NodeError(
                f"round {r}: the aggregator hands out fit config {served}, but the bounty's rules say {config}: "
                "refusing to train"
            )
        return config

    def _reusable_update(self, r: int, saved: Mapping | None, chain_hash: str, seed: int) -> bytes | None:
        """Saved, uncommitted bytes of round ``r`` trained from the same model with the same seed."""
        if not saved or saved.get("global_model_hash") != chain_hash or saved.get("seed") != seed:
            return None
        data = self._open_state.read_update(r)
        if data is None or update_hash_hex(data) != saved.get("sha256") or not saved.get("samples"):
            return None
        try:
            decode(data, expected=self._expected)
        except DataError:
            return None
        return data

    def _check_model(self, r: int, data: bytes, header_sha: str, chain_hash: str) -> None:
        actual = update_hash_hex(data)
        if not header_sha:
            raise ModelMismatch(f"round {r}: the aggregator sent the model without an X-Model-Sha256 header: "
                                "refusing to train")
        if actual != header_sha:
            raise ModelMismatch(
                f"round {r}: the model downloaded hashes to {actual}, "
                f"not to the {header_sha} the aggregator claims: refusing to train"
            )
        if actual != chain_hash:
            raise ModelMismatch(
                f"round {r}: the model downloaded hashes to {actual} but the chain says round {r}'s global model is "
                f"{chain_hash}: refusing to train"
            )

    def _resume(self, r: int, commitment: bytes) -> NodeRound | None:
        """The chain holds this institution's commitment for round ``r``: never commit again; upload if we can."""
        assert self.state is not None
        saved = self.state.round(r) or {}
        data = self.state.read_update(r)
        if data is None or self._commitment(r, update_hash(data)) != bytes(commitment):
            return self._lost(r, commitment)
        sha = _hex(update_hash(data))
        if saved.get("status") == NodeRoundStatus.UPLOADED:
            return self._finish_round(self._record_from_state(r, resumed=True))
        # committed (perhaps by a run that crashed before recording it), or refused before: (re)upload
        self.state.put(r, status=NodeRoundStatus.COMMITTED, sha256=sha)
        return self._upload(r, data, resumed=True)

    def _lost(self, r: int, commitment: bytes) -> NodeRound:
        """The chain holds a commitment of ours for round ``r`` that this state folder did not make: never commit
        again, upload nothing."""
        self.echo(
            f"bounty {self.bounty_id} round {r}: the chain holds commitment {_hex(commitment)} of {self.address} but "
            f"no saved update in {self._open_state.dir} binds to it; not committing again"
        )
        return self._finish_round(NodeRound(self.bounty_id, r, NodeRoundStatus.LOST, _hex(commitment),
                                            upload_status="no bytes to upload"))

    def _commitment(self, r: int, update_sha256: bytes) -> bytes:
        """What this institution commits for an update in round ``r``: its hash bound to us (fedcore.commitments)."""
        return bind_commitment(chain_id=self.chain_id, contract=self.ledger.address, bounty_id=self.bounty_id, round_=r,
                               institution=self.address, update_sha256=update_sha256)

    def _declared_epsilon(self, r: int) -> int:
        """The cumulative epsilon round ``r``'s commitment declares, in the chain's units (0 without DP)."""
        return epsilon_units((self._open_state.round(r) or {}).get("epsilon"))

    def _signed_commitment(self, r: int, data: bytes) -> tuple[str, int, int]:
        """The gasless commitment to ``data`` (EIP-712 signature, 0x hex) and the sample count and declared
        epsilon it signs (the same declaration ``commitUpdate`` would carry)."""
        samples, declared = int((self._open_state.round(r) or {})["samples"]), self._declared_epsilon(r)
        commitment = self._commitment(r, update_hash(data))
        signature = sign_commitment(self.account, chain_id=self.chain_id, contract=self.ledger.address,
                                    bounty_id=self.bounty_id, round_=r, commitment=commitment,
                                    sample_count=samples, declared_epsilon=declared)
        return "0x" + signature.hex(), samples, declared

    def _upload(self, r: int, data: bytes, *, resumed: bool) -> NodeRound | None:
        signature = sign_upload(self.account, self.chain_id, self.ledger.address, self.bounty_id, r, update_hash(data))
        signed = self._signed_commitment(r, data) if self.gasless else None
        try:
            answer = self.aggregator.upload(self.bounty_id, r, data, signature, signed_commitment=signed)
        except AggregatorRefused as exc:
            if exc.code == RejectionCode.DUPLICATE_UPLOAD:  # an earlier run's upload got in
                upload_status, status = "duplicate", NodeRoundStatus.UPLOADED
            else:
                upload_status, status = f"refused {exc.status}: {exc.detail}", NodeRoundStatus.REJECTED
        except AggregatorUnavailable as exc:
            # Unreachable: the round stays unfinished; the next poll finds the commitment and retries.
            self.echo(f"bounty {self.bounty_id} round {r}: upload failed, will retry: {exc}")
            return None
        else:
            upload_status, status = answer.status, NodeRoundStatus.UPLOADED
            if answer.sha256 != _hex(update_hash(data)):
                upload_status, status = (f"aggregator acknowledged {answer.sha256}, not our update",
                                         NodeRoundStatus.REJECTED)
        self._open_state.put(r, status=status, upload_status=upload_status)
        if status == NodeRoundStatus.UPLOADED:
            self._fire(NodeRoundStatus.UPLOADED, r)
        return self._finish_round(self._record_from_state(r, resumed=resumed))

    def _record_from_state(self, r: int, *, resumed: bool) -> NodeRound:
        saved = self._open_state.round(r) or {}
        return NodeRound(
            bounty=self.bounty_id,
            round=r,
            status=NodeRoundStatus(saved.get("status") or NodeRoundStatus.COMMITTED),
            sha256=saved.get("sha256"),
            samples=saved.get("samples"),
            metrics=dict(saved.get("metrics") or {}),
            commit_tx=saved.get("commit_tx"),
            upload_status=saved.get("upload_status"),
            resumed=resumed,
        )

    def _fire(self, stage: NodeRoundStatus, r: int) -> None:
        if self.hook is not None:
            self.hook(stage, r)


def open_runner_for_site(
    *,
    ledger: FedLedgerClient,
    aggregator: AggregatorClient,
    account: LocalAccount,
    bounty_id: int,
    data_path: str | os.PathLike,
    **kwargs: Any,
) -> NodeRunner:
    """A :class:`NodeRunner` for a site CSV: fetch the task, load the CSV's task columns, scale them with the task's
    scaler.

    ``kwargs`` go to :class:`NodeRunner` (``state_dir``, ``poll_seconds``, ``rounds_max``...).
    """
    from node.site import load_site

    spec = kwargs.pop("spec", None) or aggregator.task(bounty_id)
    site = load_site(data_path, spec)
    return NodeRunner(
        ledger=ledger, aggregator=aggregator, account=account, bounty_id=bounty_id, X=site.X, y=site.y, spec=spec,
        **kwargs,
    )


__all__ = [
    "ModelMismatch",
    "NodeRound",
    "NodeRoundStatus",
    "NodeRunner",
    "NodeState",
    "default_state_dir",
    "open_runner_for_site",
    "read_personal",
]
