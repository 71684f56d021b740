"""The aggregator's state database is versioned: one written by the previous aggregator (signed commitments without
their declared epsilon) is migrated forward on open; one from a newer aggregator, or too old to migrate, is refused
with one line naming the folder."""

from __future__ import annotations

import sqlite3

import pytest

from aggregator.service.state import DB_NAME, SCHEMA, SCHEMA_VERSION, StateDB
from fedcore.errors import ConfigError
from fedcore.protocol import RoundStep
from ledger.client import SignedCommitment

# What the previous aggregator created: today's schema but for the declared epsilon, and no version recorded.
PREVIOUS_SCHEMA = SCHEMA.replace("    declared_epsilon INTEGER NOT NULL,\n", "")
ALICE, BOB = "0x" + "aa" * 20, "0x" + "bb" * 20


def _old_database(folder, schema: str = PREVIOUS_SCHEMA, *, version: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / DB_NAME)
    conn.executescript(schema)
    conn.execute("INSERT INTO rounds (round, step, global_model_sha, selected_json, settings_json, created_at,"
                 " updated_at) VALUES (1, 'open', ?, '[]', '{}', 0, 0)", ("ab" * 32,))
    conn.execute("INSERT INTO signed_commitments (round, institution, commitment, sample_count, signature)"
                 " VALUES (1, ?, ?, 20, ?)", (ALICE, "11" * 32, "22" * 65))
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


def test_a_database_of_the_previous_aggregator_is_migrated_and_takes_signed_commitments(tmp_path):
    assert PREVIOUS_SCHEMA != SCHEMA
    _old_database(tmp_path)
    db = StateDB(tmp_path)
    try:
        signed = SignedCommitment(BOB, bytes.fromhex("33" * 32), 30, bytes.fromhex("44" * 65), 500_000)
        _, created = db.accept_upload(1, BOB, "cd" * 32, 10, signed=signed)
        assert created
        assert [(c.institution, c.sample_count, c.declared_epsilon) for c in db.signed_commitments(1)] == [
            (ALICE, 20, 0), (BOB, 30, 500_000)]  # the old commitment declared no epsilon
        assert db.round(1).step == RoundStep.OPEN
    finally:
        db.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    StateDB(tmp_path).close()  # opening again changes nothing


def test_a_new_database_is_stamped_with_the_current_version(tmp_path):
    StateDB(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_database_of_a_newer_aggregator_is_refused_in_one_line(tmp_path):
    _old_database(tmp_path, version=SCHEMA_VERSION + 1)
    with pytest.raises(ConfigError) as refused:
        StateDB(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path) in message and "newer" in message and "--state-dir" in message


def test_a_database_too_old_to_migrate_is_refused_in_one_line_and_left_as_it_was(tmp_path):
    before_lapse = PREVIOUS_SCHEMA.replace(", 'lapsed'", "")
    assert before_lapse != PREVIOUS_SCHEMA
    _old_database(tmp_path, before_lapse)
    with pytest.raises(ConfigError) as refused:
        StateDB(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path) in message and "too old to migrate" in message
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert "declared_epsilon" not in {row[1] for row in conn.execute("PRAGMA table_info(signed_commitments)")}
    conn.close()
