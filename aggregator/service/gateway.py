"""The aggregator's view of one bounty on chain: typed reads, its two transactions, and event look-ups.

Every call goes through one lock when the chain is the embedded one (eth-tester is not thread-safe and
the HTTP handlers and the coordinator share it); a JSON-RPC chain is called concurrently.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from fedcore.errors import ChainError
from ledger.chain import is_embedded, latest_timestamp, send_transaction
from ledger.client import Bounty, FedLedgerClient, Institution, Round

LOG_CHUNK = 2000  # blocks per eth_getLogs request when scanning a long range


@dataclass(frozen=True)
class Commitment:
    """An ``UpdateCommitted`` event: who committed which update hash with how many samples."""

    institution: str
    update_hash: bytes
    sample_count: int
    block_number: int


@dataclass(frozen=True)
class TxRecord:
    """Where a round was opened or finalized: the round, the transaction hash (0x hex) and its block."""

    round: int
    tx_hash: str
    block_number: int


class BountyLedger:
    """One bounty of a deployed FedLedger, seen by its aggregator.

    Parameters
    ----------
    client : FedLedgerClient
        The contract, with the aggregator's account as sender.
    bounty_id : int
    from_block : int
        Where event look-ups start (the contract's deployment block).
    """

    def __init__(self, client: FedLedgerClient, bounty_id: int, *, from_block: int = 0):
        self.client = client
        self.w3: Web3 = client.w3
        self.bounty_id = int(bounty_id)
        self.from_block = int(from_block)
        self._lock = threading.RLock() if is_embedded(client.w3) else None
        self._chain_id: int | None = None
        self._joined: set[str] = set()
        self._joined_scanned_to = self.from_block - 1

    @contextlib.contextmanager
    def _guard(self):
        if self._lock is None:
            yield
        else:
            with self._lock:
                yield

    @property
    def address(self) -> str:
        return self.client.address

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with self._guard():
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def sender(self) -> str:
        return self.client.sender_address

    # -- views ----------------------------------------------------------------------------------
    def bounty(self) -> Bounty:
        with self._guard():
            return self.client.bounty(self.bounty_id)

    def round(self, number: int) -> Round:
        with self._guard():
            return self.client.round(self.bounty_id, number)

    def commitment_of(self, number: int, institution: str) -> bytes:
        with self._guard():
            return self.client.commitment_of(self.bounty_id, number, institution)

    def institution(self, address: str) -> Institution:
        with self._guard():
            return self.client.institution(address)

    def min_stake(self) -> int:
        """The stake (wei) below which an institution cannot commit."""
        with self._guard():
            return self.client.min_stake()

    def now(self) -> int:
        """Timestamp of the latest block."""
        with self._guard():
            return latest_timestamp(self.w3)

    # -- events ---------------------------------------------------------------------------------
    def _logs(self, event: str, filters: Mapping[str, Any] | None = None, from_block: int | None = None,
              to_block: int | str = "latest") -> list[Any]:
        start = self.from_block if from_block is None else max(int(from_block), self.from_block)
        with self._guard():
            try:
                return list(getattr(self.client.contract.events, event)().get_logs(
                    from_block=start, to_block=to_block, argument_filters=dict(filters or {})
                ))
            except Exception as exc:  # web3 raises several types for a failed eth_getLogs
                raise ChainError(f"cannot read {event} events: {exc}".splitlines()[0]) from None

    def commitments(self, number: int, *, from_block: int | None = None) -> dict[str, Commitment]:
        """Every commitment of round ``number``, by checksum address (``from_block``: where the round opened)."""
        found: dict[str, Commitment] = {}
        filters = {"bountyId": self.bounty_id, "round": int(number)}
        for log in self._logs("UpdateCommitted", filters, from_block):
            args = log["args"]
            if int(args["bountyId"]) != self.bounty_id or int(args["round"]) != int(number):
                continue
            address = Web3.to_checksum_address(args["institution"])
            found[address] = Commitment(address, bytes(args["updateHash"]), int(args["sampleCount"]), int(log["blockNumber"]))
        return found

    def institutions(self) -> list[str]:
        """Every address that ever joined, sorted (scanned incrementally: each block once)."""
        with self._guard():
            latest = int(self.w3.eth.block_number)
            while latest > self._joined_scanned_to:
                end = min(latest, self._joined_scanned_to + LOG_CHUNK)
                for log in self._logs("InstitutionJoined", None, self._joined_scanned_to + 1, end):
                    self._joined.add(Web3.to_checksum_address(log["args"]["institution"]))
                self._joined_scanned_to = end
            return sorted(self._joined)

    def seed_institutions(self, addresses: list[str], scanned_to: int) -> None:
        """Start the joined-institutions scan from a known set, complete up to block ``scanned_to``
        (e.g. an index kept elsewhere; tests use it because eth-tester's log scan is slow on long chains)."""
        with self._guard():
            self._joined = {Web3.to_checksum_address(a) for a in addresses}
            self._joined_scanned_to = int(scanned_to)

    def event_tx(self, event: str, number: int, *, from_block: int | None = None) -> TxRecord | None:
        """The transaction that emitted ``event`` (``RoundOpened``, ``RoundFinalized``) for round ``number``."""
        for log in self._logs(event, {"bountyId": self.bounty_id, "round": int(number)}, from_block):
            if int(log["args"]["bountyId"]) == self.bounty_id and int(log["args"]["round"]) == int(number):
                return TxRecord(int(number), "0x" + bytes(log["transactionHash"]).hex(), int(log["blockNumber"]))
        return None

    # -- transactions ---------------------------------------------------------------------------
    def open_round(self, global_model_hash: bytes) -> TxRecord:
        """Open the bounty's next round; returns its number, transaction and block."""
        sender = self.client.sender
        if sender is None:
            raise ChainError("the aggregator's ledger client has no sender: pass its key")
        with self._guard():
            receipt = send_transaction(self.w3, self.client.contract.functions.openRound(self.bounty_id, bytes(global_model_hash)),
                                       sender)
            number = int(self.client.events(receipt, "RoundOpened")[0]["round"])
        return TxRecord(number, "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"]))

    def finalize_round(self, number: int, new_model_hash: bytes, scores: Mapping[str, int]) -> str:
        """Finalize with fixed-point ``scores``; returns the transaction hash."""
        with self._guard():
            receipt = self.client.finalize_round(self.bounty_id, number, new_model_hash, scores)
        return "0x" + bytes(receipt["transactionHash"]).hex()
