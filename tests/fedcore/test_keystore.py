"""The institution's encrypted keystore: round trip, wrong password, file safety, password sources."""

import json
import os
import stat

import pytest
from eth_account import Account

from fedcore.errors import ConfigError
from fedcore.keystore import (
    KEYSTORE_ENV,
    PASSWORD_ENV,
    create_keystore,
    default_keystore_path,
    keystore_address,
    load_keystore,
    read_password,
    resolve_keystore_path,
    write_private_file,
)

FAST = 2**4  # scrypt cost for tests only; the default is 2**18
PASSWORD = "correct horse battery"


def test_round_trip_keeps_the_key(tmp_path):
    path = tmp_path / "sub" / "keystore.json"
    account, backup = create_keystore(path, PASSWORD, scrypt_n=FAST)
    assert backup is None
    loaded = load_keystore(path, PASSWORD)
    assert loaded.address == account.address and loaded.key == account.key
    data = json.loads(path.read_text())
    assert data["crypto"]["kdf"] == "scrypt" and data["version"] == 3
    assert keystore_address(path) == account.address  # readable without the password
    assert account.key.hex() not in path.read_text()  # encrypted, not stored in the clear


def test_file_and_folder_are_private(tmp_path):
    path = tmp_path / "new" / "keystore.json"
    create_keystore(path, PASSWORD, scrypt_n=FAST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["keystore.json"]  # no temporary file left behind


def test_default_scrypt_cost_is_the_standard_one(tmp_path):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD)
    assert json.loads(path.read_text())["crypto"]["kdfparams"]["n"] == 2**18


def test_wrong_password_is_one_clear_line(tmp_path):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD, scrypt_n=FAST)
    with pytest.raises(ConfigError) as info:
        load_keystore(path, "not the password")
    assert str(info.value) == f"wrong password for keystore {path}"


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "no 'crypto' section"),
        ('{"version": 3}', "no 'crypto' section"),
        ('{"version": 3, "crypto": {"kdf": "scrypt"}}', "malformed keystore"),
    ],
)
def test_malformed_files_are_one_line(tmp_path, content, expected):
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_keystore(path, PASSWORD)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="no keystore at .*fedledger node init"):
        load_keystore(tmp_path / "none.json", PASSWORD)


def test_tampered_address_is_detected(tmp_path):
    path = tmp_path / "k.json"
    create_keystore(path, PASSWORD, scrypt_n=FAST)
    data = json.loads(path.read_text())
    data["address"] = Account.create().address[2:].lower()
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="belongs to"):
        load_keystore(path, PASSWORD)


def test_refuses_to_overwrite_unless_forced_and_keeps_a_backup(tmp_path):
    path = tmp_path / "k.json"
    first, _ = create_keystore(path, PASSWORD, scrypt_n=FAST)
    with pytest.raises(ConfigError, match="already exists.*--force"):
        create_keystore(path, PASSWORD, scrypt_n=FAST)
    assert load_keystore(path, PASSWORD).address == first.address  # untouched
    second, backup = create_keystore(path, PASSWORD, force=True, scrypt_n=FAST)
    assert second.address != first.address
    assert load_keystore(backup, PASSWORD).address == first.address
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600


def test_import_of_a_given_key(tmp_path):
    key = "0x" + "11" * 32
    account, _ = create_keystore(tmp_path / "k.json", PASSWORD, private_key=key, scrypt_n=FAST)
    assert account.address == Account.from_key(key).address
    with pytest.raises(ConfigError, match="malformed"):
        create_keystore(tmp_path / "bad.json", PASSWORD, private_key="0x1234", scrypt_n=FAST)
    assert not (tmp_path / "bad.json").exists()


def test_short_password_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least 8"):
        create_keystore(tmp_path / "k.json", "short", scrypt_n=FAST)


def test_password_sources_in_order(tmp_path):
    file = tmp_path / "pw"
    file.write_text("from the file\n")
    env = {PASSWORD_ENV: "from the env"}
    assert read_password(password_file=file, env=env) == "from the file"  # one trailing newline dropped
    assert read_password(env=env) == "from the env"
    assert read_password(env={}, interactive=True, prompt=lambda _: "typed") == "typed"
    with pytest.raises(ConfigError, match="no keystore password"):
        read_password(env={}, interactive=False)


def test_prompt_confirmation_must_match():
    answers = iter(["first entry", "second entry"])
    with pytest.raises(ConfigError, match="differ"):
        read_password(env={}, interactive=True, confirm=True, prompt=lambda _: next(answers))


def test_bad_password_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_password(password_file=tmp_path / "none", env={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_password(password_file=tmp_path / "empty", env={})


def test_keystore_path_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(KEYSTORE_ENV, str(tmp_path / "env.json"))
    assert default_keystore_path() == tmp_path / "env.json"
    assert resolve_keystore_path(tmp_path / "given.json") == tmp_path / "given.json"
    monkeypatch.delenv(KEYSTORE_ENV)
    assert default_keystore_path() == resolve_keystore_path(None)
    assert str(default_keystore_path()).endswith(os.path.join(".fedledger", "keystore.json"))


def test_private_write_replaces_atomically(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_private_file(path, b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_write_left_to_a_later_folder_sync_is_still_whole(tmp_path, monkeypatch):
    """``sync_folder=False`` skips only the folder's fsync (the rename's durability, left to the next write in that
    folder): the file itself is fsynced, complete and private."""
    import fedcore.files

    synced = []
    monkeypatch.setattr(fedcore.files, "_fsync_dir", lambda folder: synced.append(folder))
    write_private_file(tmp_path / "update.bin", b"update", sync_folder=False)
    assert synced == []
    write_private_file(tmp_path / "state.json", b"{}")
    assert synced == [tmp_path]
    path = tmp_path / "update.bin"
    assert path.read_bytes() == b"update" and stat.S_IMODE(path.stat().st_mode) == 0o600
