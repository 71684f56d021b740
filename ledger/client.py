"""Typed clients for the deployed contracts: the only place outside ``ledger/`` internals that touches an ABI.

Every transaction method waits for its receipt and returns it (or the value the contract returns, read from
the event it emitted); every revert surfaces as ``ContractRevert`` with the custom error's name and arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Self

from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from fedcore.errors import ChainError
from fedcore.signing import compact_signature
from fedcore.types import Digest
from ledger.chain import Sender, call, embedded_head, embedded_logs, is_embedded, send_transaction
from ledger.compile import load_artifact
from ledger.deployment import MAIN_CONTRACT, SPLITTER_CONTRACT, Deployment

ETH = "0x" + "00" * 20  # the reward "token" address that means ether
SCORE_SCALE = 10**18  # scores on chain are fixed point with 18 decimals
REPUTATION_ONE = 10_000  # reputation on chain is in basis points
LOG_CHUNK = 2000  # blocks per eth_getLogs request when scanning a long range

# The round's transactions go out with known gas limits instead of an estimate (py-evm estimates by a binary search
# of re-executions): one simulation (eth_call) still surfaces a revert before anything is mined. Each is (fixed, per
# participant listed): the worst case measured by bench/gas.py (first writes of every slot: bench/results/gas.json)
# times GAS_HEADROOM. A limit only caps a transaction; unused gas costs nothing. Functions not listed are estimated.
GAS_HEADROOM = 1.5
MEASURED_GAS: dict[str, tuple[int, int]] = {
    "openRound": (79_434, 0),
    "commitUpdate": (55_554, 0),
    "commitUpdatesSigned": (27_774, 34_808),  # fitted on batches of 1-50; per entry declaring ε
    "finalizeRound": (94_998, 34_858),
}


def gas_limit(function: str, participants: int = 0) -> int | None:
    """The gas limit ``function`` is sent with (``participants``: how many it lists), or None to estimate it."""
    if function not in MEASURED_GAS:
        return None
    fixed, per_participant = MEASURED_GAS[function]
    return int((fixed + per_participant * participants) * GAS_HEADROOM)


class BountyStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    COMPLETED = 2
    CANCELLED = 3


@dataclass(frozen=True)
class Institution:
    address: str
    stake: int
    reputation: int
    joined_at: int
    leave_requested_at: int
    registered: bool
    ever_joined: bool


DEFAULT_RECOVERY_GRACE = 3_600  # seconds: a stalled round frees the escrow an hour after its commit window
EPSILON_SCALE = 10**6  # on chain, differential-privacy epsilons are integers in millionths


def epsilon_units(epsilon: float | None) -> int:
    """``epsilon`` in the chain's units (millionths), rounded up so a declaration never understates; None is 0."""
    if epsilon is None:
        return 0
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    return math.ceil(round(epsilon * EPSILON_SCALE, 6))


@dataclass(frozen=True, kw_only=True)
class BountyParams:
    """What a sponsor fixes when it creates a bounty (hashes are 32 bytes; ``token`` is ``ETH`` for ether).

    ``rules_hash`` is the sha256 of the canonical JSON of the bounty's fully resolved scoring rules.
    ``recovery_grace`` (seconds, not zero): once an open round is that far past its commit window and still not
    finalized, the sponsor may cancel the bounty and recover what is not yet credited.
    ``scorers`` (addresses besides the aggregator) and ``quorum`` name the scoring committee: a round is finalized
    only with ``quorum`` matching attestations, the aggregator's included (no scorers, quorum 1: it alone decides).
    ``epsilon_budget`` (:func:`epsilon_units` of the task's ``privacy.epsilon``; 0 without DP): the contract refuses a
    commitment declaring a larger cumulative epsilon.
    """

    task_spec_hash: bytes
    validation_set_hash: bytes
    rules_hash: bytes
    aggregator: str
    num_rounds: int
    commit_window: int
    deadline: int
    min_reputation: int = 0
    token: str = ETH
    recovery_grace: int = DEFAULT_RECOVERY_GRACE
    scorers: tuple[str, ...] = ()
    quorum: int = 1
    epsilon_budget: int = 0

    def as_tuple(self) -> tuple:
        return (
            bytes(self.task_spec_hash),
            bytes(self.validation_set_hash),
            bytes(self.rules_hash),
            Web3.to_checksum_address(self.aggregator),
            self.num_rounds,
            self.commit_window,
            self.deadline,
            self.min_reputation,
            Web3.to_checksum_address(self.token),
            self.recovery_grace,
            [Web3.to_checksum_address(a) for a in self.scorers],
            self.quorum,
            self.epsilon_budget,
        )


@dataclass(frozen=True)
class Bounty:
    id: int
    sponsor: str
    num_rounds: int
    rounds_opened: int
    rounds_finalized: int
    aggregator: str
    commit_window: int
    deadline: int
    status: BountyStatus
    min_reputation: int
    token: str
    recovery_grace: int
    quorum: int
    epsilon_budget: int  # millionths of epsilon; 0: no differential privacy
    funded: int
    credited: int
    refunded: int
    total_positive_score: int
    task_spec_hash: bytes
    validation_set_hash: bytes
    rules_hash: bytes

    @property
    def escrowed(self) -> int:
        """Reward still held for coming rounds (the money invariant: funded = credited + refunded + escrowed)."""
        return self.funded - self.credited - self.refunded

    @property
    def is_eth(self) -> bool:
        return int(self.token, 16) == 0


@dataclass(frozen=True)
class Round:
    bounty_id: int
    number: int
    global_model_hash: bytes
    new_model_hash: bytes
    opened_at: int
    commit_deadline: int
    finalized: bool


@dataclass(frozen=True)
class Commitment:
    """An ``UpdateCommitted`` event: who committed which update hash with how many samples, and where;
    ``epsilon`` is the committer's declared cumulative DP epsilon in millionths (0: none declared)."""

    institution: str
    update_hash: Digest
    sample_count: int
    block_number: int
    tx_hash: str
    epsilon: int = 0

    @property
    def declared_epsilon(self) -> float | None:
        """The declared cumulative epsilon, or None when none was declared."""
        return self.epsilon / EPSILON_SCALE if self.epsilon else None


@dataclass(frozen=True)
class SignedCommitment:
    """A commitment an institution signed (:func:`fedcore.commitments.sign_commitment`) for someone to post;
    ``declared_epsilon`` is the cumulative epsilon it signed, in millionths (0 on a bounty without DP)."""

    institution: str
    commitment: bytes
    sample_count: int
    signature: bytes
    declared_epsilon: int = 0


@dataclass(frozen=True)
class TxRecord:
    """Where a round was opened or finalized: the round, the transaction hash (0x hex) and its block."""

    round: int
    tx_hash: str
    block_number: int


def tx_hash_hex(value: bytes | str) -> str:
    """A transaction hash as ``0x`` and 64 lowercase hex digits (receipts and logs carry bytes)."""
    return value.lower() if isinstance(value, str) else Web3.to_hex(bytes(value))


def _same(value: Any, wanted: Any) -> bool:
    # an event argument against a filter value (addresses in any case)
    if isinstance(value, str) and isinstance(wanted, str):
        return value.lower() == wanted.lower()
    return value == wanted


class BlockReads:
    """Views answered once per block on the embedded chain (:func:`ledger.chain.embedded_head`), shared by a client
    and its ``as_sender`` copies: in one process the aggregator's steps and every node's poll read the same bounty,
    round and commitments again and again between two transactions. A new block empties it."""

    def __init__(self) -> None:
        self._head: str | None = None
        self._values: dict[tuple, Any] = {}

    def read(self, w3: Web3, key: tuple, fetch: Any) -> Any:
        head = embedded_head(w3)
        if head is None:
            return fetch()
        if head != self._head:
            self._head, self._values = head, {}
        if key not in self._values:
            self._values[key] = fetch()
        return self._values[key]


class _ContractClient:
    """Plumbing shared by the typed clients: one deployed contract, acting as ``sender``.

    Parameters
    ----------
    w3 : Web3
        The chain.
    address : str
        The contract's address.
    sender : LocalAccount or str, optional
        Who signs transactions: a local account, or the address of an account the node holds unlocked.
        Views need none.
    abi : list, optional
        The contract's ABI; by default its artifact's (``ARTIFACT``).
    """

    ARTIFACT: str

    def __init__(self, w3: Web3, address: str, *, sender: Sender | None = None, abi: list | None = None):
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.sender = sender
        self._abi = abi or load_artifact(self.ARTIFACT)["abi"]
        self.contract: Contract = w3.eth.contract(address=self.address, abi=self._abi)
        self._reads = BlockReads()  # shared with as_sender copies
        # Views name their caller on the embedded chain: left out, web3's eth-tester middleware lists the node's
        # accounts on every call to pick this same first one (a sixth of a view's cost). JSON-RPC nodes need none.
        self._caller = w3.eth.accounts[0] if is_embedded(w3) else None
        if not w3.eth.get_code(self.address):
            raise ChainError(f"no contract at {self.address} on this chain: is the deployment file for another chain?")

    @classmethod
    def from_deployment(cls, w3: Web3, deployment: Deployment, *, sender: Sender | None = None) -> Self:
        deployment.check_chain(w3)
        return cls(w3, deployment.address(cls.ARTIFACT), sender=sender)

    def as_sender(self, sender: Sender) -> Self:
        """The same contract, with transactions signed by ``sender``."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.sender = sender
        return other

    @property
    def sender_address(self) -> str:
        if self.sender is None:
            raise ChainError("this client has no sender: pass a key or an unlocked account")
        return Web3.to_checksum_address(self.sender if isinstance(self.sender, str) else self.sender.address)

    # -- plumbing ---------------------------------------------------------------------------------------
    def _send(
        self, fn: str, *args: Any, value: int = 0, gas: int | None = None, known_gas: int | None = None,
        extra_abi: list | None = None,
    ) -> TxReceipt:
        if self.sender is None:
            raise ChainError(f"{fn} needs a sender: pass a key or an unlocked account")
        return send_transaction(
            self.w3, getattr(self.contract.functions, fn)(*args), self.sender,
            value=value, gas=gas, known_gas=known_gas, errors_abi=extra_abi,
        )

    def _view(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        def fetch() -> Any:
            return call(getattr(self.contract.functions, fn)(*args), sender=self._caller, block=block)

        if block != "latest":
            return fetch()
        # lists (outcome digests take the participants and scores) become tuples so the key can be hashed
        key = (fn, *(tuple(a) if isinstance(a, list) else a for a in args))
        return self._reads.read(self.w3, key, fetch)

    def events(self, receipt: TxReceipt, name: str) -> list[dict]:
        """Decoded ``name`` events emitted by this contract in ``receipt``."""
        event = getattr(self.contract.events, name)()
        return [dict(e["args"]) for e in event.process_receipt(receipt, errors=DISCARD)]

    def function_name(self, calldata: bytes | str) -> str:
        """The name of this contract's function that ``calldata`` calls (``ValueError`` if none matches)."""
        return self.contract.decode_function_input(calldata)[0].fn_name

    def logs(self, event: str, filters: Mapping[str, Any] | None = None, *, from_block: int = 0,
             to_block: int | str = "latest") -> list[Any]:
        """Every ``event`` log of this contract in ``[from_block, to_block]`` whose indexed arguments match ``filters``.

        Raises
        ------
        ChainError
            When the node cannot answer ``eth_getLogs``.
        """
        kind = getattr(self.contract.events, event)()
        raw = embedded_logs(self.w3, self.address, int(from_block), to_block)
        if raw is not None:
            topic = event_abi_to_log_topic(kind.abi)
            decoded = [kind.process_log(entry) for entry in raw if entry["topics"][:1] == [topic]]
            return [log for log in decoded if all(_same(log["args"][k], v) for k, v in (filters or {}).items())]
        try:
            return list(kind.get_logs(
                from_block=int(from_block), to_block=to_block, argument_filters=dict(filters or {})))
        except Exception as exc:  # noqa: BLE001 - web3 raises several types for a failed eth_getLogs
            raise ChainError(f"cannot read {event} events: {exc}".splitlines()[0]) from None


class FedLedgerClient(_ContractClient):
    """A thin typed client for one deployed ``FedLedger`` (see ``_ContractClient`` for the parameters)."""

    ARTIFACT = MAIN_CONTRACT

    # -- institutions -----------------------------------------------------------------------------------
    def join(self, name: str, metadata_uri: str = "", *, stake: int) -> TxReceipt:
        return self._send("join", name, metadata_uri, value=stake)

    def request_leave(self) -> TxReceipt:
        return self._send("requestLeave")

    def withdraw_stake(self) -> TxReceipt:
        return self._send("withdrawStake")

    def slash(self, institution: str, amount: int, evidence_hash: bytes) -> TxReceipt:
        return self._send("slash", Web3.to_checksum_address(institution), amount, bytes(evidence_hash))

    def withdraw_slashed(self, to: str) -> TxReceipt:
        return self._send("withdrawSlashed", Web3.to_checksum_address(to))

    def institution(self, address: str) -> Institution:
        return self.institutions([address])[0]

    def institutions(self, addresses: list[str]) -> list[Institution]:
        """The records of ``addresses``, in order, in one view (embedded: one EVM run instead of one each)."""
        checksummed = [Web3.to_checksum_address(a) for a in addresses]
        if not checksummed:
            return []
        records = self._view("getInstitutionRecords", checksummed)
        return [Institution(a, *record) for a, record in zip(checksummed, records, strict=True)]

    def min_stake(self) -> int:
        return self._view("minStake")

    def leave_cooldown(self) -> int:
        return self._view("leaveCooldown")

    def governance(self) -> str:
        return self._view("governance")

    def pending_governance(self) -> str:
        """The successor governance named and not yet accepted (the zero address when none)."""
        return self._view("pendingGovernance")

    def transfer_governance(self, new_governance: str) -> TxReceipt:
        """Governance names its successor (the zero address withdraws a pending handover)."""
        return self._send("transferGovernance", Web3.to_checksum_address(new_governance))

    def accept_governance(self) -> TxReceipt:
        """The named successor takes over governance."""
        return self._send("acceptGovernance")

    def reputation_floor(self, token: str = ETH) -> int:
        """The round reward from which a bounty in ``token`` moves reputation fully (0: it moves none)."""
        return self._view("reputationFloor", Web3.to_checksum_address(token))

    def set_reputation_floor(self, token: str, floor: int) -> TxReceipt:
        """Governance fixes the reputation floor of one reward asset."""
        return self._send("setReputationFloor", Web3.to_checksum_address(token), floor)

    def slashed_balance(self) -> int:
        return self._view("slashedBalance")

    # -- bounties ---------------------------------------------------------------------------------------
    def create_bounty(self, params: BountyParams, funding: int = 0) -> int:
        """Create a bounty escrowing ``funding`` (approve a token first); returns its id."""
        value = funding if int(params.token, 16) == 0 else 0
        receipt = self._send("createBounty", params.as_tuple(), funding, value=value, extra_abi=_token_errors())
        return self.events(receipt, "BountyCreated")[0]["bountyId"]

    def fund_bounty(self, bounty_id: int, amount: int) -> TxReceipt:
        value = amount if self.bounty(bounty_id).is_eth else 0
        return self._send("fundBounty", bounty_id, amount, value=value, extra_abi=_token_errors())

    def cancel_bounty(self, bounty_id: int) -> TxReceipt:
        return self._send("cancelBounty", bounty_id, extra_abi=_token_errors())

    def refund_remainder(self, bounty_id: int) -> TxReceipt:
        return self._send("refundRemainder", bounty_id, extra_abi=_token_errors())

    def bounty(self, bounty_id: int, *, block: int | str = "latest") -> Bounty:
        """The contract's record of a bounty (at ``block``: the node must still hold that block's state)."""
        fields = self._view("getBounty", bounty_id, block=block)
        values = list(fields)
        values[7] = BountyStatus(values[7])
        return Bounty(bounty_id, *values)

    def bounty_count(self) -> int:
        return self._view("bountyCount")

    def escrow_of(self, bounty_id: int) -> int:
        return self._view("escrowOf", bounty_id)

    # -- rounds -----------------------------------------------------------------------------------------
    def open_round(self, bounty_id: int, global_model_hash: bytes) -> int:
        """Open the bounty's next round; returns its number."""
        return self.open_round_tx(bounty_id, global_model_hash).round

    def open_round_tx(self, bounty_id: int, global_model_hash: bytes) -> TxRecord:
        """Open the bounty's next round; returns its number, transaction and block."""
        receipt = self._send("openRound", bounty_id, bytes(global_model_hash), known_gas=gas_limit("openRound"))
        number = int(self.events(receipt, "RoundOpened")[0]["round"])
        return TxRecord(number, tx_hash_hex(receipt["transactionHash"]), int(receipt["blockNumber"]))

    def commit_update(self, bounty_id: int, round_: int, update_hash: bytes, sample_count: int,
                      declared_epsilon: int = 0) -> TxReceipt:
        """Commit to an update; ``declared_epsilon`` is the committer's cumulative DP epsilon in millionths
        (:func:`epsilon_units`), at most the bounty's ``epsilon_budget``."""
        return self._send("commitUpdate", bounty_id, round_, bytes(update_hash), sample_count, declared_epsilon,
                          known_gas=gas_limit("commitUpdate"))

    def commit_updates_signed(self, bounty_id: int, round_: int, signed: list[SignedCommitment]) -> TxReceipt:
        """Post institutions' signed commitments in one transaction (``commitUpdatesSigned``); institutions that
        already committed this round are skipped by the contract; one declaring more than the bounty's privacy
        budget reverts the batch (``PrivacyBudgetExceeded``), as any entry the contract refuses does."""
        entries = [(Web3.to_checksum_address(c.institution), bytes(c.commitment), int(c.sample_count),
                    int(c.declared_epsilon), *compact_signature(c.signature)) for c in signed]
        return self._send("commitUpdatesSigned", bounty_id, round_, entries,
                          known_gas=gas_limit("commitUpdatesSigned", len(entries)))

    def finalize_round(
        self, bounty_id: int, round_: int, new_model_hash: bytes, scores: Mapping[str, int],
        attestations: list[bytes] | None = None, *, commitments: Mapping[str, bytes] | None = None,
    ) -> TxReceipt:
        """Finalize with fixed-point ``scores`` by institution address; with ``attestations`` (other committee
        members' signatures over :meth:`outcome`'s digest) through ``finalizeRoundAttested``.

        The contract wants participants in ascending order of their committed update hash (that single
        ordering rules out a participant listed twice and a copied hash). ``commitments`` (the committed hash by
        address, e.g. from the round's ``UpdateCommitted`` events) gives that order; a participant missing from it
        is read from the chain. A wrong hash there only misorders the list, which the contract refuses.
        """
        participants, ordered_scores = self.outcome(bounty_id, round_, scores, commitments=commitments)
        args = (bounty_id, round_, bytes(new_model_hash), participants, ordered_scores)
        if attestations is None:
            return self._send("finalizeRound", *args, known_gas=gas_limit("finalizeRound", len(participants)))
        return self._send("finalizeRoundAttested", *args, [bytes(a) for a in attestations])

    def outcome(self, bounty_id: int, round_: int, scores: Mapping[str, int], *,
                commitments: Mapping[str, bytes] | None = None) -> tuple[list[str], list[int]]:
        """The participants in the order the contract takes them (ascending committed update hash) and their scores;
        hashes missing from ``commitments`` are read from the chain."""
        known = {str(Web3.to_checksum_address(a)): bytes(h) for a, h in (commitments or {}).items()}
        addresses = [str(Web3.to_checksum_address(a)) for a in scores]
        hashes = {a: known[a] if a in known else self.commitment_of(bounty_id, round_, a) for a in addresses}
        ordered = sorted(hashes, key=lambda a: hashes[a])
        by_address = {str(Web3.to_checksum_address(a)): int(s) for a, s in scores.items()}
        return ordered, [by_address[a] for a in ordered]

    def outcome_digest(self, bounty_id: int, round_: int, new_model_hash: bytes, participants: list[str],
                       scores: list[int]) -> bytes:
        """The EIP-712 digest committee members sign for this outcome, computed by the contract."""
        return bytes(self._view("outcomeDigest", bounty_id, round_, bytes(new_model_hash),
                                [Web3.to_checksum_address(a) for a in participants], [int(s) for s in scores]))

    def committee_of(self, bounty_id: int) -> tuple[int, int]:
        """(quorum, scorers besides the aggregator) of a bounty."""
        return self.bounty(bounty_id).quorum, int(self._view("scorerCount", bounty_id))

    def record_dissent(self, bounty_id: int, round_: int, digest: bytes) -> TxReceipt:
        return self._send("recordDissent", bounty_id, round_, bytes(digest))

    def lapse_round(self, bounty_id: int) -> TxReceipt:
        return self._send("lapseRound", bounty_id)

    def round(self, bounty_id: int, round_: int) -> Round:
        return Round(bounty_id, round_, *self._view("getRound", bounty_id, round_))

    def commitment_of(self, bounty_id: int, round_: int, institution: str) -> bytes:
        return bytes(self._view("commitmentOf", bounty_id, round_, Web3.to_checksum_address(institution)))

    def commitments(self, bounty_id: int, round_: int, *, from_block: int = 0) -> dict[str, Commitment]:
        """Every commitment of a round by checksum address, from its ``UpdateCommitted`` events
        (``from_block``: where to start looking, e.g. the block that opened the round)."""
        found: dict[str, Commitment] = {}
        for log in self._round_logs("UpdateCommitted", bounty_id, round_, from_block):
            args = log["args"]
            address = Web3.to_checksum_address(args["institution"])
            found[address] = Commitment(address, Digest(bytes(args["updateHash"])), int(args["sampleCount"]),
                                        int(log["blockNumber"]), tx_hash_hex(log["transactionHash"]),
                                        int(args.get("epsilon", 0)))
        return found

    def event_tx(self, event: str, bounty_id: int, round_: int, *, from_block: int = 0) -> TxRecord | None:
        """The transaction that emitted ``event`` (``RoundOpened``, ``RoundFinalized``) for a round, if any."""
        for log in self._round_logs(event, bounty_id, round_, from_block):
            return TxRecord(int(round_), tx_hash_hex(log["transactionHash"]), int(log["blockNumber"]))
        return None

    def joined_institutions(self, *, from_block: int, to_block: int) -> set[str]:
        """The addresses of every ``InstitutionJoined`` in ``[from_block, to_block]``, scanned in chunks."""
        joined: set[str] = set()
        for start in range(int(from_block), int(to_block) + 1, LOG_CHUNK):
            end = min(int(to_block), start + LOG_CHUNK - 1)
            joined |= {Web3.to_checksum_address(log["args"]["institution"])
                       for log in self.logs("InstitutionJoined", from_block=start, to_block=end)}
        return joined

    def _round_logs(self, event: str, bounty_id: int, round_: int, from_block: int) -> list[Any]:
        # Some nodes ignore argument filters on indexed topics: keep only the round's own logs.
        logs = self.logs(event, {"bountyId": int(bounty_id), "round": int(round_)}, from_block=from_block)
        return [log for log in logs
                if int(log["args"]["bountyId"]) == int(bounty_id) and int(log["args"]["round"]) == int(round_)]

    # -- money ------------------------------------------------------------------------------------------
    def claim(self, bounty_id: int) -> int:
        """Withdraw the caller's credited reward; returns the amount paid."""
        receipt = self._send("claim", bounty_id, extra_abi=_token_errors())
        return self.events(receipt, "RewardClaimed")[0]["amount"]

    def contribution_of(self, bounty_id: int, institution: str) -> tuple[int, int]:
        """(unclaimed reward, cumulative positive score) of ``institution`` in a bounty."""
        unclaimed, cumulative = self._view("contributionOf", bounty_id, Web3.to_checksum_address(institution))
        return unclaimed, cumulative

    def final_scores(self, bounty_id: int, institution: str) -> tuple[int, int]:
        """(cumulative positive score of ``institution``, total positive score) of a completed bounty."""
        return tuple(self._view("finalScores", bounty_id, Web3.to_checksum_address(institution)))


class RevenueSplitterClient(_ContractClient):
    """A thin typed client for the ``RevenueSplitter`` deployed beside the ledger: it holds revenue only and splits
    it by the final scores of completed bounties, which it reads from the ledger."""

    ARTIFACT = SPLITTER_CONTRACT

    def pay_revenue(self, bounty_id: int, amount: int, token: str = ETH) -> TxReceipt:
        value = amount if int(token, 16) == 0 else 0
        return self._send(
            "payRevenue", bounty_id, Web3.to_checksum_address(token), amount, value=value, extra_abi=_splitter_errors()
        )

    def claim_revenue(self, bounty_id: int, token: str = ETH) -> int:
        receipt = self._send("claimRevenue", bounty_id, Web3.to_checksum_address(token), extra_abi=_splitter_errors())
        return self.events(receipt, "RevenueClaimed")[0]["amount"]

    def revenue_due(self, bounty_id: int, institution: str, token: str = ETH) -> int:
        return self._view(
            "revenueDue", bounty_id, Web3.to_checksum_address(token), Web3.to_checksum_address(institution)
        )

    def revenue_total(self, bounty_id: int, token: str = ETH) -> int:
        return self._view("revenueTotal", bounty_id, Web3.to_checksum_address(token))

    def revenue_released(self, bounty_id: int, token: str = ETH) -> int:
        return self._view("revenueReleased", bounty_id, Web3.to_checksum_address(token))

    def ledger_address(self) -> str:
        """The FedLedger whose final scores split this splitter's revenue."""
        return self._view("ledger")


class TokenClient:
    """An ERC-20 token (the test tokens add ``mint``)."""

    def __init__(self, w3: Web3, address: str, *, sender: Sender | None = None, artifact: str = "TestToken"):
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.sender = sender
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact(artifact)["abi"])

    def as_sender(self, sender: Sender) -> TokenClient:
        other = object.__new__(TokenClient)
        other.__dict__.update(self.__dict__)
        other.sender = sender
        return other

    def _send(self, fn: str, *args: Any) -> TxReceipt:
        if self.sender is None:
            raise ChainError(f"{fn} needs a sender")
        return send_transaction(self.w3, getattr(self.contract.functions, fn)(*args), self.sender)

    def approve(self, spender: str, amount: int) -> TxReceipt:
        return self._send("approve", Web3.to_checksum_address(spender), amount)

    def mint(self, to: str, amount: int) -> TxReceipt:
        return self._send("mint", Web3.to_checksum_address(to), amount)

    def balance_of(self, owner: str) -> int:
        return call(self.contract.functions.balanceOf(Web3.to_checksum_address(owner)))


def _token_errors() -> list:
    # SafeERC20's and OZ ERC20's custom errors bubble up through the ledger; decode them by name too.
    return [e for e in load_artifact("TestToken")["abi"] if e.get("type") == "error"]


def _splitter_errors() -> list:
    # The ledger's errors (BountyNotCompleted, UnknownBounty) bubble up through finalScores,
    # a token's through transfers.
    return _token_errors() + [e for e in load_artifact(MAIN_CONTRACT)["abi"] if e.get("type") == "error"]
