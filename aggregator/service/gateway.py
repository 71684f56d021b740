"""The aggregator's view of one bounty on chain: the ledger client's reads, transactions and event look-ups for
that bounty, behind one lock.

Every call goes through one lock when the chain is the embedded one (eth-tester is not thread-safe and
the HTTP handlers and the coordinator share it); a JSON-RPC chain is called concurrently.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping

from web3 import Web3

from fedcore.errors import ChainError
from ledger.chain import is_embedded, latest_timestamp
from ledger.client import (
    Bounty,
    Commitment,
    FedLedgerClient,
    Institution,
    Round,
    SignedCommitment,
    TxRecord,
    tx_hash_hex,
)


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
        self._committed: dict[int, dict[str, Commitment]] = {}  # by round: commitments seen (final once made)
        self._scorers: tuple[str, ...] | None = None  # the committee besides the aggregator, fixed at creation

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

    def institution_records(self, addresses: list[str]) -> list[Institution]:
        """The records of ``addresses``, in order, read in one view."""
        with self._guard():
            return self.client.institutions(addresses)

    def min_stake(self) -> int:
        """The stake (wei) below which an institution cannot commit."""
        with self._guard():
            return self.client.min_stake()

    def now(self) -> int:
        """Timestamp of the latest block."""
        with self._guard():
            return latest_timestamp(self.w3)

    # -- events ---------------------------------------------------------------------------------
    def _since(self, from_block: int | None) -> int:
        return self.from_block if from_block is None else max(int(from_block), self.from_block)

    def commitments(self, number: int, *, from_block: int | None = None) -> dict[str, Commitment]:
        """Every commitment of round ``number``, by checksum address (``from_block``: where the round opened)."""
        with self._guard():
            found = self.client.commitments(self.bounty_id, number, from_block=self._since(from_block))
        self._committed.setdefault(int(number), {}).update(found)
        return found

    def institutions(self) -> list[str]:
        """Every address that ever joined, sorted (scanned incrementally: each block once)."""
        with self._guard():
            latest = int(self.w3.eth.block_number)
            if latest > self._joined_scanned_to:
                self._joined |= self.client.joined_institutions(from_block=self._joined_scanned_to + 1, to_block=latest)
                self._joined_scanned_to = latest
            return sorted(self._joined)

    def seed_institutions(self, addresses: list[str], scanned_to: int) -> None:
        """Start the joined-institutions scan from a known set, complete up to block ``scanned_to``
        (e.g. an index kept elsewhere; tests use it because eth-tester's log scan is slow on long chains)."""
        with self._guard():
            self._joined = {Web3.to_checksum_address(a) for a in addresses}
            self._joined_scanned_to = int(scanned_to)

    def event_tx(self, event: str, number: int, *, from_block: int | None = None) -> TxRecord | None:
        """The transaction that emitted ``event`` (``RoundOpened``, ``RoundFinalized``) for round ``number``."""
        with self._guard():
            return self.client.event_tx(event, self.bounty_id, number, from_block=self._since(from_block))

    # -- transactions ---------------------------------------------------------------------------
    def open_round(self, global_model_hash: bytes) -> TxRecord:
        """Open the bounty's next round; returns its number, transaction and block."""
        sender = self.client.sender
        if sender is None:
            raise ChainError("the aggregator's ledger client has no sender: pass its key")
        with self._guard():
            return self.client.open_round_tx(self.bounty_id, global_model_hash)

    def scorers(self) -> tuple[str, ...]:
        """The bounty's scorers besides its aggregator (its ``CommitteeNamed`` event; none for a bounty without)."""
        if self._scorers is None:
            with self._guard():
                logs = self.client.logs("CommitteeNamed", {"bountyId": self.bounty_id}, from_block=self.from_block)
            named = [log for log in logs if int(log["args"]["bountyId"]) == self.bounty_id]
            self._scorers = tuple(Web3.to_checksum_address(a) for a in named[0]["args"]["scorers"]) if named else ()
        return self._scorers

    def outcome(self, number: int, scores: Mapping[str, int]) -> tuple[list[str], list[int]]:
        """The participants in the contract's order and their scores (what the committee signs)."""
        known = {a: bytes(c.update_hash) for a, c in self._committed.get(int(number), {}).items()}
        with self._guard():
            return self.client.outcome(self.bounty_id, number, scores, commitments=known)

    def finalize_round(self, number: int, new_model_hash: bytes, scores: Mapping[str, int],
                       attestations: list[bytes] | None = None) -> str:
        """Finalize with fixed-point ``scores`` (and other members' ``attestations`` on a committee bounty); returns
        the transaction hash. The participants are ordered by the commitments this view already read for the round
        (scoring reads them all); others are read from the chain."""
        known = {a: bytes(c.update_hash) for a, c in self._committed.get(int(number), {}).items()}
        with self._guard():
            receipt = self.client.finalize_round(self.bounty_id, number, new_model_hash, scores, attestations,
                                                 commitments=known)
        return tx_hash_hex(receipt["transactionHash"])

    def lapse_round(self) -> str:
        """Close the bounty's stalled open round without an outcome; returns the transaction hash."""
        with self._guard():
            receipt = self.client.lapse_round(self.bounty_id)
        return tx_hash_hex(receipt["transactionHash"])

    def commit_updates_signed(self, number: int, signed: list[SignedCommitment]) -> str:
        """Post institutions' signed commitments for round ``number`` in one transaction; returns its hash."""
        with self._guard():
            receipt = self.client.commit_updates_signed(self.bounty_id, number, signed)
        return tx_hash_hex(receipt["transactionHash"])
