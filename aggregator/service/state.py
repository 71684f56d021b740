"""The aggregator's durable state in SQLite (``<state-dir>/aggregator.sqlite``).

A round moves through steps, each committed before the action that follows it::

    opening --openRound tx--> open --window closed / all invited uploaded--> scoring --aggregate+score, saved--> scored
            --finalizeRound tx--> finalized

* ``opening``: the global model, the invited institutions and the round's settings are on disk; the
  ``openRound`` transaction may or may not have been mined (the chain's ``roundsOpened`` tells).
* ``open``: the chain has the round; uploads are accepted.
* ``scoring``: uploads are closed (an upload either got in before this step, atomically, or is refused).
* ``scored``: the new model, the optimizer state, the decisions and the scores are saved; a restart
  reuses them and never recomputes.
* ``finalized``: the chain shows the round finalized (by our transaction, recorded with its hash, or found
  already finalized on restart). On a bounty with a scoring committee (quorum q > 1), ``scored`` waits for q - 1
  matching attestations of other members (table ``attestations``).
* ``lapsed``: a committee round that no quorum attested before its window plus the recovery grace, closed on chain
  by ``lapseRound``: nothing credited; the next round starts from this round's model and round state.

Schema
------
Versioned by SQLite's ``user_version`` (:data:`SCHEMA_VERSION`): opening a database written by an earlier
aggregator migrates it forward in one transaction; one written by a newer aggregator is refused with one line.
``meta(key, value)``: what this state directory belongs to (chain id, ledger, bounty, aggregator) and the
bounty's last known status.
``rounds``: one row per round (see :class:`RoundState`); JSON columns hold lists and objects.
``uploads(round, institution, sha256, size, received_at)``: accepted uploads, one per institution and round.
``refusals(round, institution, code, detail, at)``: the latest refusal of each invited institution's upload in a
round (its :class:`~fedcore.protocol.RejectionCode` and detail), so the committee listing can say why an invited
committer's update is not served; only invited institutions of a known round get a row (bounded by the invitations).
``decisions(round, institution, sha256, num_samples, used, reason, score, score_fixed)``: per round, what became
of every committed institution (used, or excluded and why) and its score (``num_samples`` and ``score_fixed`` as
decimal strings: a sample count is a uint256 on chain, beyond SQLite's 64-bit INTEGER).
``attestations(round, scorer, signature, outcome_json, received_at)``: other committee members' signatures over the
outcome each computed (a member's latest one per round), kept whether or not it matches ours, so a restart finalizes
with them.
``journal(id, round, step, at, note)``: every step reached, in order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcore.errors import AggregatorError, ConfigError
from fedcore.protocol import RoundStep
from ledger.client import SignedCommitment

DB_NAME = "aggregator.sqlite"
#: The schema's version (SQLite's ``user_version``). 0: a database written before versions were recorded; 1: signed
#: commitments carry the declared epsilon (``signed_commitments.declared_epsilon``); 2: refused uploads of invited
#: institutions are noted (table ``refusals``, created by SCHEMA). Bump it with each change of SCHEMA and teach
#: :func:`_migrate` the step.
SCHEMA_VERSION = 2

_STEPS_SQL = ", ".join(f"'{step}'" for step in RoundStep)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    step TEXT NOT NULL CHECK (step IN ({_STEPS_SQL})),
    global_model_sha TEXT NOT NULL,
    selected_json TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    state_before_sha TEXT,
    commit_deadline INTEGER,
    opened_at INTEGER,
    open_tx TEXT,
    open_block INTEGER,
    new_model_sha TEXT,
    state_after_sha TEXT,
    used_json TEXT,
    excluded_json TEXT,
    aggregate_json TEXT,
    scores_json TEXT,
    finalize_tx TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    round INTEGER NOT NULL,
    institution TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (round, institution)
);
CREATE TABLE IF NOT EXISTS signed_commitments (
    round INTEGER NOT NULL,
    institution TEXT NOT NULL,
    commitment TEXT NOT NULL,
    sample_count INTEGER NOT NULL,
    declared_epsilon INTEGER NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (round, institution)
);
CREATE TABLE IF NOT EXISTS refusals (
    round INTEGER NOT NULL,
    institution TEXT NOT NULL,
    code TEXT NOT NULL,
    detail TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (round, institution)
);
CREATE TABLE IF NOT EXISTS decisions (
    round INTEGER NOT NULL,
    institution TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    num_samples TEXT NOT NULL,
    used INTEGER NOT NULL,
    reason TEXT,
    score REAL,
    score_fixed TEXT,
    PRIMARY KEY (round, institution)
);
CREATE TABLE IF NOT EXISTS attestations (
    round INTEGER NOT NULL,
    scorer TEXT NOT NULL,
    signature TEXT NOT NULL,
    outcome_json TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (round, scorer)
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    round INTEGER NOT NULL,
    step TEXT NOT NULL,
    at REAL NOT NULL,
    note TEXT
);
"""


class RoundNotAccepting(AggregatorError):
    """An upload for a round that is not (or no longer) open."""


@dataclass(frozen=True)
class AttestationRecord:
    """A committee member's attestation: its 65-byte signature over ``outcome`` (new model hash without 0x,
    participants in the contract's order, their fixed-point scores), already checked to recover to ``scorer``."""

    round: int
    scorer: str
    signature: bytes
    outcome: dict[str, Any]
    received_at: float


@dataclass(frozen=True)
class RefusalRecord:
    """The latest refusal of an invited institution's upload in a round (``code``: a RejectionCode value)."""

    round: int
    institution: str
    code: str
    detail: str
    at: float


@dataclass(frozen=True)
class UploadRecord:
    round: int
    institution: str
    sha256: str  # 64 hex, no 0x
    size: int
    received_at: float


@dataclass(frozen=True)
class Decision:
    institution: str
    sha256: str
    num_samples: int
    used: bool
    reason: str | None = None
    score: float | None = None
    score_fixed: int | None = None


@dataclass(frozen=True)
class RoundState:
    """One round as the aggregator saw it (hashes are 64 hex characters without ``0x``).

    ``settings`` holds what the round is computed with: strategy and its parameters, scorer and its
    parameters, the round's scoring seed, the selection mode. ``used`` lists the updates that entered the
    round, ``[{"institution", "sha256", "num_samples"}]`` sorted by institution; ``excluded`` maps
    institution -> reason; ``scores`` is the scorer's report (``fixed_point`` values as decimal strings).
    """

    round: int
    step: RoundStep
    global_model_sha: str
    selected: list[str]
    settings: dict[str, Any]
    state_before_sha: str | None = None
    commit_deadline: int | None = None
    opened_at: int | None = None
    open_tx: str | None = None
    open_block: int | None = None
    new_model_sha: str | None = None
    state_after_sha: str | None = None
    used: list[dict[str, Any]] | None = None
    excluded: dict[str, str] | None = None
    aggregate: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    finalize_tx: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def fixed_point_scores(self) -> dict[str, int]:
        """The on-chain scores by institution (empty before ``scored``)."""
        if not self.scores:
            return {}
        return {address: int(value) for address, value in self.scores.get("fixed_point", {}).items()}


_JSON_COLUMNS = {"selected": "selected_json", "settings": "settings_json", "used": "used_json",
                 "excluded": "excluded_json", "aggregate": "aggregate_json", "scores": "scores_json"}


class StateDB:
    """Thread-safe access to ``aggregator.sqlite`` (one connection, one lock, WAL, synchronous=FULL).

    Parameters
    ----------
    state_dir : path
        The state directory (created if needed); the database is ``<state_dir>/aggregator.sqlite``.
    """

    def __init__(self, state_dir: str | os.PathLike):
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / DB_NAME
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            try:
                with self._transaction():  # a crash mid-migration leaves the old schema and version: retried
                    _migrate(self._conn, state_dir)
            except ConfigError:
                self._conn.close()
                raise
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing -------------------------------------------------------------------------------
    def _transaction(self):
        return _Transaction(self)

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._lock:
            self._conn.execute(sql, tuple(params))

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """All rows, fetched under the lock (the connection is shared by threads)."""
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    # -- meta -----------------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self._execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                      " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                      (key, str(value)))

    def bind(self, identity: dict[str, Any]) -> None:
        """Record what this state belongs to, or check it matches what it was first used for.

        Raises
        ------
        ConfigError
            When the directory belongs to another chain, ledger, bounty or aggregator.
        """
        with self._transaction():
            for key, value in identity.items():
                stored = self.meta(key)
                if stored is None:
                    self.set_meta(key, value)
                elif stored != str(value):
                    raise ConfigError(
                        f"state dir {self.path.parent} belongs to {key} {stored}, not {value}: use another --state-dir"
                    )

    # -- rounds ---------------------------------------------------------------------------------
    def round(self, number: int) -> RoundState | None:
        row = self._one("SELECT * FROM rounds WHERE round = ?", (int(number),))
        return _record(row) if row else None

    def rounds(self) -> list[RoundState]:
        return [_record(row) for row in self._query("SELECT * FROM rounds ORDER BY round")]

    def latest_round(self) -> RoundState | None:
        row = self._one("SELECT * FROM rounds ORDER BY round DESC LIMIT 1")
        return _record(row) if row else None

    def insert_opening(self, number: int, *, global_model_sha: str, selected: list[str], settings: dict[str, Any],
                       state_before_sha: str | None) -> RoundState:
        """Create round ``number`` at step ``opening`` (idempotent: an existing row is returned unchanged)."""
        now = time.time()
        with self._transaction():
            existing = self.round(number)
            if existing is not None:
                return existing
            self._execute(
                "INSERT INTO rounds (round, step, global_model_sha, selected_json, settings_json, state_before_sha,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (int(number), RoundStep.OPENING, global_model_sha, _dump(selected), _dump(settings), state_before_sha,
                 now, now),
            )
            self._journal(number, RoundStep.OPENING)
        return self._require(number)

    def mark_open(self, number: int, *, commit_deadline: int, opened_at: int, open_tx: str | None,
                  open_block: int | None) -> RoundState:
        with self._transaction():
            record = self._require(number)
            if record.step == RoundStep.OPENING:
                self._update(number, step=RoundStep.OPEN, commit_deadline=int(commit_deadline),
                             opened_at=int(opened_at), open_tx=open_tx, open_block=open_block)
                self._journal(number, RoundStep.OPEN, open_tx)
        return self._require(number)

    def begin_scoring(self, number: int) -> RoundState:
        """Close round ``number`` to uploads (``open`` -> ``scoring``); later steps are left alone."""
        with self._transaction():
            record = self._require(number)
            if record.step == RoundStep.OPEN:
                self._update(number, step=RoundStep.SCORING)
                self._journal(number, RoundStep.SCORING, f"{len(self.uploads(number))} uploads")
        return self._require(number)

    def save_scored(self, number: int, *, new_model_sha: str, state_after_sha: str | None, used: list[dict[str, Any]],
                    excluded: dict[str, str], aggregate: dict[str, Any], scores: dict[str, Any],
                    decisions: list[Decision]) -> RoundState:
        """Save everything finalization needs, at once (``scoring`` -> ``scored``)."""
        with self._transaction():
            record = self._require(number)
            if record.step != RoundStep.SCORING:
                return record
            self._update(number, step=RoundStep.SCORED, new_model_sha=new_model_sha, state_after_sha=state_after_sha,
                         used_json=_dump(used), excluded_json=_dump(excluded), aggregate_json=_dump(aggregate),
                         scores_json=_dump(scores))
            self._execute("DELETE FROM decisions WHERE round = ?", (number,))
            for d in decisions:
                self._execute(
                    "INSERT INTO decisions (round, institution, sha256, num_samples, used, reason, score, score_fixed)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (number, d.institution, d.sha256, str(int(d.num_samples)), int(d.used), d.reason, d.score,
                     None if d.score_fixed is None else str(int(d.score_fixed))),
                )
            self._journal(number, RoundStep.SCORED, f"{len(used)} used, {len(excluded)} excluded")
        return self._require(number)

    def mark_finalized(self, number: int, *, finalize_tx: str | None, note: str | None = None) -> RoundState:
        with self._transaction():
            record = self._require(number)
            if record.step != RoundStep.FINALIZED:
                self._update(number, step=RoundStep.FINALIZED, finalize_tx=finalize_tx)
                self._journal(number, RoundStep.FINALIZED, note or finalize_tx)
        return self._require(number)

    def mark_lapsed(self, number: int, *, lapse_tx: str | None, note: str | None = None) -> RoundState:
        """Round ``number`` closed on chain without an outcome (no quorum in time); the next round starts from the
        same model and round state."""
        with self._transaction():
            record = self._require(number)
            if record.step not in (RoundStep.FINALIZED, RoundStep.LAPSED):
                self._update(number, step=RoundStep.LAPSED, finalize_tx=lapse_tx)
                self._journal(number, RoundStep.LAPSED, note or lapse_tx)
        return self._require(number)

    def save_attestation(self, number: int, scorer: str, signature: bytes, outcome: dict[str, Any]) -> None:
        """Keep a member's attestation for round ``number`` (its newer one replaces an older one)."""
        self._execute("INSERT INTO attestations (round, scorer, signature, outcome_json, received_at)"
                      " VALUES (?, ?, ?, ?, ?) ON CONFLICT(round, scorer) DO UPDATE SET signature = excluded.signature,"
                      " outcome_json = excluded.outcome_json, received_at = excluded.received_at",
                      (int(number), scorer, bytes(signature).hex(), _dump(outcome), time.time()))

    def attestations(self, number: int) -> list[AttestationRecord]:
        rows = self._query("SELECT * FROM attestations WHERE round = ? ORDER BY scorer", (int(number),))
        return [AttestationRecord(row["round"], row["scorer"], bytes.fromhex(row["signature"]),
                                  json.loads(row["outcome_json"]), row["received_at"]) for row in rows]

    def journal(self, number: int | None = None) -> list[dict[str, Any]]:
        if number is None:
            rows = self._query("SELECT * FROM journal ORDER BY id")
        else:
            rows = self._query("SELECT * FROM journal WHERE round = ? ORDER BY id", (number,))
        return [dict(row) for row in rows]

    def decisions(self, number: int) -> list[Decision]:
        rows = self._query("SELECT * FROM decisions WHERE round = ? ORDER BY institution", (number,))
        return [
            Decision(row["institution"], row["sha256"], int(row["num_samples"]), bool(row["used"]), row["reason"],
                     row["score"], None if row["score_fixed"] is None else int(row["score_fixed"]))
            for row in rows
        ]

    # -- uploads --------------------------------------------------------------------------------
    def accept_upload(self, number: int, institution: str, sha256: str, size: int,
                      store: Callable[[], Any] | None = None,
                      signed: SignedCommitment | None = None) -> tuple[UploadRecord, bool]:
        """Record an upload if round ``number`` is open, atomically with the step check.

        ``store`` (writing the blob) runs inside the same critical section, after the check and before the
        row is written, so nothing is stored for a refused upload. Returns ``(record, created)``; an upload
        already recorded for this institution and round is returned with ``created=False`` (nothing is stored).
        ``signed``: the upload's gasless commitment, kept for the round's batch (:meth:`signed_commitments`).

        Raises
        ------
        RoundNotAccepting
            When the round is unknown or not at step ``open``.
        """
        with self._transaction():
            record = self.round(number)
            existing = self.upload_of(number, institution)
            if existing is not None:
                return existing, False
            if record is None or record.step != RoundStep.OPEN:
                raise RoundNotAccepting(
                    f"round {number} is not open for uploads" + (f" (it is {record.step})" if record else "")
                )
            if store is not None:
                store()
            now = time.time()
            self._execute("INSERT INTO uploads (round, institution, sha256, size, received_at) VALUES (?, ?, ?, ?, ?)",
                          (number, institution, sha256, int(size), now))
            if signed is not None:
                self._execute("INSERT INTO signed_commitments (round, institution, commitment, sample_count, "
                              "declared_epsilon, signature) VALUES (?, ?, ?, ?, ?, ?)",
                              (number, institution, bytes(signed.commitment).hex(), int(signed.sample_count),
                               int(signed.declared_epsilon), bytes(signed.signature).hex()))
        return UploadRecord(number, institution, sha256, int(size), now), True

    def signed_commitments(self, number: int) -> list[SignedCommitment]:
        """The gasless commitments handed over with round ``number``'s uploads, by institution."""
        rows = self._query("SELECT * FROM signed_commitments WHERE round = ? ORDER BY institution", (number,))
        return [SignedCommitment(row["institution"], bytes.fromhex(row["commitment"]), int(row["sample_count"]),
                                 bytes.fromhex(row["signature"]), int(row["declared_epsilon"])) for row in rows]

    def note_refusal(self, number: int, institution: str, code: str, detail: str) -> bool:
        """Note why ``institution``'s upload for round ``number`` was refused (its latest refusal replaces an older
        one); only for an institution invited to a known round, so unsolicited uploads cannot grow the table.
        Returns whether it was noted."""
        with self._transaction():
            record = self.round(number)
            if record is None or institution not in set(record.selected):
                return False
            self._execute("INSERT INTO refusals (round, institution, code, detail, at) VALUES (?, ?, ?, ?, ?)"
                          " ON CONFLICT(round, institution) DO UPDATE SET code = excluded.code,"
                          " detail = excluded.detail, at = excluded.at",
                          (int(number), institution, str(code), detail, time.time()))
        return True

    def refusals(self, number: int) -> list[RefusalRecord]:
        rows = self._query("SELECT * FROM refusals WHERE round = ? ORDER BY institution", (int(number),))
        return [RefusalRecord(row["round"], row["institution"], row["code"], row["detail"], row["at"])
                for row in rows]

    def upload_of(self, number: int, institution: str) -> UploadRecord | None:
        row = self._one("SELECT * FROM uploads WHERE round = ? AND institution = ?", (number, institution))
        return _upload(row) if row else None

    def uploads(self, number: int) -> list[UploadRecord]:
        rows = self._query("SELECT * FROM uploads WHERE round = ? ORDER BY institution", (number,))
        return [_upload(row) for row in rows]

    def upload_shas(self, number: int) -> set[str]:
        return {u.sha256 for u in self.uploads(number)}

    # -- helpers --------------------------------------------------------------------------------
    def _require(self, number: int) -> RoundState:
        record = self.round(number)
        if record is None:
            raise AggregatorError(f"round {number} is not in the aggregator's state")
        return record

    def _update(self, number: int, **columns: Any) -> None:
        columns["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self._execute(f"UPDATE rounds SET {assignments} WHERE round = ?", (*columns.values(), int(number)))

    def _journal(self, number: int, step: RoundStep, note: str | None = None) -> None:
        self._execute("INSERT INTO journal (round, step, at, note) VALUES (?, ?, ?, ?)",
                      (int(number), step, time.time(), note))


def _migrate(conn: sqlite3.Connection, state_dir: Path) -> None:
    """Bring a state database written by an earlier version of the aggregator up to :data:`SCHEMA_VERSION` (a new
    one is only stamped), inside the caller's transaction; refuse, with one line naming the folder, one written
    by a newer version or one too old to migrate."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ConfigError(f"state dir {state_dir} has schema version {version}, newer than this aggregator's "
                          f"{SCHEMA_VERSION}: run the newer aggregator, or use another --state-dir")
    if version == SCHEMA_VERSION:
        return
    tables = {row[0]: row[1] for row in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
    # 0 -> 1: a database from before versions (or a new, empty one). Schemas older than the last unversioned one
    # (rounds without every step, sample counts as integers) cannot be altered in place.
    too_old = [what for what, old in (
        ("its rounds know fewer steps", "rounds" in tables and any(f"'{step}'" not in tables["rounds"]
                                                                    for step in RoundStep)),
        ("it keeps sample counts as integers", "decisions" in tables and "num_samples INTEGER" in tables["decisions"]),
    ) if old]
    if too_old:
        raise ConfigError(f"state dir {state_dir} was written by an aggregator too old to migrate "
                          f"({'; '.join(too_old)}): finish its bounty with that version, or use another --state-dir")
    if "signed_commitments" in tables and "declared_epsilon" not in _columns(conn, "signed_commitments"):
        # a commitment signed before epsilon was declared declared none: 0, as the contract reads an absent one
        conn.execute("ALTER TABLE signed_commitments ADD COLUMN declared_epsilon INTEGER NOT NULL DEFAULT 0")
    # 1 -> 2: only a new table (refusals), which SCHEMA creates right after
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


class _Transaction:
    """Re-entrant ``BEGIN IMMEDIATE`` ... ``COMMIT`` under the database lock."""

    def __init__(self, db: StateDB):
        self.db = db

    def __enter__(self):
        self.db._lock.acquire()
        self.outer = not self.db._conn.in_transaction
        if self.outer:
            self.db._conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.outer:
                self.db._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db._lock.release()
        return False


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _record(row: sqlite3.Row) -> RoundState:
    values = dict(row)
    kwargs: dict[str, Any] = {}
    for name, column in _JSON_COLUMNS.items():
        raw = values.pop(column)
        kwargs[name] = json.loads(raw) if raw is not None else None
    values["step"] = RoundStep(values["step"])
    return RoundState(**values, **kwargs)


def _upload(row: sqlite3.Row) -> UploadRecord:
    return UploadRecord(row["round"], row["institution"], row["sha256"], row["size"], row["received_at"])


__all__ = ["DB_NAME", "AttestationRecord", "Decision", "RoundNotAccepting", "RoundState", "StateDB", "UploadRecord"]
