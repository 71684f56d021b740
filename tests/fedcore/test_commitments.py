"""A commitment binds its committer: every field changes it, a copy names the victim, and its encoding is fixed."""

import hashlib

import pytest

from fedcore.commitments import DOMAIN, bind_commitment
from fedcore.errors import DataError

ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20
LEDGER = "0x" + "11" * 20
SHA = hashlib.sha256(b"an update").digest()
BASE = {"chain_id": 1337, "contract": LEDGER, "bounty_id": 3, "round_": 2, "institution": ALICE, "update_sha256": SHA}


def test_the_encoding_is_the_documented_one():
    expected = hashlib.sha256(
        DOMAIN + (1337).to_bytes(32, "big") + bytes.fromhex("11" * 20) + (3).to_bytes(32, "big")
        + (2).to_bytes(32, "big") + bytes.fromhex("a1" * 20) + SHA
    ).digest()
    assert bind_commitment(**BASE) == expected
    assert len(DOMAIN) == 23


@pytest.mark.parametrize("field, other", [
    ("chain_id", 1), ("contract", "0x" + "12" * 20), ("bounty_id", 4), ("round_", 3), ("institution", BOB),
    ("update_sha256", hashlib.sha256(b"another update").digest()),
])
def test_every_field_changes_the_commitment(field, other):
    assert bind_commitment(**{**BASE, field: other}) != bind_commitment(**BASE)


def test_identical_updates_of_two_institutions_have_different_commitments():
    """Two honest free riders with the same (e.g. zero) update no longer collide."""
    assert bind_commitment(**BASE) != bind_commitment(**{**BASE, "institution": BOB})


def test_address_case_does_not_matter():
    assert bind_commitment(**{**BASE, "institution": ALICE.upper().replace("0X", "0x")}) == bind_commitment(**BASE)


@pytest.mark.parametrize("field, bad", [
    ("update_sha256", b"short"), ("round_", -1), ("bounty_id", 2**256), ("chain_id", True), ("institution", "0x12"),
    ("contract", "not an address"),
])
def test_malformed_inputs_are_refused(field, bad):
    with pytest.raises(DataError, match="commitment|update hash"):
        bind_commitment(**{**BASE, field: bad})
