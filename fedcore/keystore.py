"""An identity (institution, sponsor or aggregator): an Ethereum key in an encrypted (scrypt) keystore file.

The file is the standard Web3 Secret Storage format (version 3) that geth, MetaMask and
``eth_account`` read. It is written atomically with mode 0600 in a folder of mode 0700.

The password comes from, in order: a file (``--password-file``), the environment variable
``FEDLEDGER_PASSWORD``, or a prompt on the terminal. Never from a command-line argument: those end
up in shell history and in ``ps`` output for every user of the machine.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from fedcore.errors import ConfigError
from fedcore.files import write_atomic

KEYSTORE_ENV = "FEDLEDGER_KEYSTORE"
PASSWORD_ENV = "FEDLEDGER_PASSWORD"
DEFAULT_KEYSTORE = Path("~/.fedledger/keystore.json")
SCRYPT_N = 2**18  # geth's "standard" scrypt cost: about 0.6 s and 256 MiB to unlock
MIN_PASSWORD_LENGTH = 8


def default_keystore_path() -> Path:
    """``$FEDLEDGER_KEYSTORE`` if set, else ``~/.fedledger/keystore.json``."""
    return Path(os.environ.get(KEYSTORE_ENV) or DEFAULT_KEYSTORE).expanduser()


def resolve_keystore_path(path: str | os.PathLike | None) -> Path:
    """``path`` (expanded) if given, else :func:`default_keystore_path`."""
    return Path(path).expanduser() if path else default_keystore_path()


# -- passwords ---------------------------------------------------------------------------------------------
def read_password(
    *,
    password_file: str | os.PathLike | None = None,
    confirm: bool = False,
    env: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> str:
    """The keystore password, from a file, ``$FEDLEDGER_PASSWORD`` or a terminal prompt (in that order).

    Parameters
    ----------
    password_file : path, optional
        A file holding the password; one trailing newline is ignored.
    confirm : bool
        Prompt twice and require both entries to match (for a new keystore).
    env : mapping, optional
        Environment to read (default ``os.environ``).
    prompt : callable, optional
        Prompt function (default ``getpass.getpass``).
    interactive : bool, optional
        Whether prompting is possible (default: stdin is a terminal).

    Raises
    ------
    ConfigError
        An unreadable or empty password file, mismatched prompts, or no source at all.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if password_file is not None:
        path = Path(password_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"password file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"cannot read password file {path}: {reason}") from None
        password = text[:-1] if text.endswith("\n") else text
        password = password[:-1] if password.endswith("\r") else password
        if not password:
            raise ConfigError(f"password file {path} is empty")
        return password
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise ConfigError(
            f"no keystore password: pass --password-file FILE, set {PASSWORD_ENV}, or run in a terminal to be prompted"
        )
    ask = prompt or getpass.getpass
    password = ask("Keystore password: ")
    if confirm:
        if ask("Repeat password: ") != password:
            raise ConfigError("the two passwords differ")
    if not password:
        raise ConfigError("empty password")
    return password


# -- files ---------------------------------------------------------------------------------------------------
def write_private_file(path: str | os.PathLike, data: bytes, *, sync_folder: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically, readable by its owner only (0600, in a 0700 folder); ``sync_folder``:
    see :func:`fedcore.files.write_atomic`."""
    return write_atomic(path, data, private=True, sync_folder=sync_folder)


def create_keystore(
    path: str | os.PathLike | None,
    password: str,
    *,
    force: bool = False,
    private_key: bytes | str | None = None,
    scrypt_n: int = SCRYPT_N,
) -> tuple[LocalAccount, Path | None]:
    """Create a new key (or import ``private_key``) and save it encrypted at ``path``.

    Parameters
    ----------
    path : path or None
        Where to write (default :func:`default_keystore_path`).
    password : str
        At least 8 characters.
    force : bool
        Replace an existing keystore; the old file is kept beside it as ``<name>.bak-<unix time>``.
    private_key : bytes or hex str, optional
        Import this key instead of generating one.
    scrypt_n : int
        scrypt cost parameter (a power of two); lower it only in tests.

    Returns
    -------
    (LocalAccount, Path or None)
        The account, and the backup of a replaced keystore if there was one.

    Raises
    ------
    ConfigError
        When a keystore exists and ``force`` is false, the password is too short, or the key is malformed.
    """
    path = resolve_keystore_path(path)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    backup = None
    if path.exists():
        if not force:
            raise ConfigError(
                f"a keystore already exists at {path}: pass --force to replace it (the old one is kept as a backup)"
            )
        backup = path.with_name(f"{path.name}.bak-{int(time.time())}")
        os.replace(path, backup)
    try:
        account = Account.from_key(private_key) if private_key is not None else Account.create()
    except Exception:  # eth-account raises ValueError, binascii.Error, ... for a malformed key
        raise ConfigError("the private key to import is malformed: expected 32 bytes as hex") from None
    keystore = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    write_private_file(path, (json.dumps(keystore, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return account, backup


def read_keystore_json(path: str | os.PathLike | None) -> dict[str, Any]:
    """The parsed keystore file (still encrypted); ConfigError when missing or malformed."""
    path = resolve_keystore_path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no keystore at {path}: create one with `fedledger node init`") from None
    except IsADirectoryError:
        raise ConfigError(f"keystore path {path} is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"cannot read keystore {path}: {reason}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ConfigError(f"malformed keystore {path}: not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("crypto") or data.get("Crypto"), dict):
        raise ConfigError(f"malformed keystore {path}: no 'crypto' section (not a Web3 Secret Storage file)")
    return data


def keystore_address(path: str | os.PathLike | None) -> str | None:
    """The checksum address recorded in the keystore, read without the password (None if absent)."""
    data = read_keystore_json(path)
    address = data.get("address")
    if not isinstance(address, str):
        return None
    try:
        return to_checksum_address(address if address.startswith("0x") else "0x" + address)
    except ValueError:
        return None


def load_keystore(path: str | os.PathLike | None, password: str) -> LocalAccount:
    """Decrypt the keystore at ``path``.

    Raises
    ------
    ConfigError
        ``wrong password for keystore PATH``; or a missing or malformed file, in one line.
    """
    path = resolve_keystore_path(path)
    data = read_keystore_json(path)
    try:
        key = Account.decrypt(data, password)
    except ValueError as exc:  # eth-keyfile's EthKeyfileValueError subclasses ValueError
        if "MAC mismatch" in str(exc):
            raise ConfigError(f"wrong password for keystore {path}") from None
        first_line = str(exc).splitlines()[0] if str(exc) else "cannot decrypt"
        raise ConfigError(f"malformed keystore {path}: {first_line}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"malformed keystore {path}: missing or invalid field {exc}") from None
    except NotImplementedError as exc:
        raise ConfigError(f"unsupported keystore {path}: {exc}") from None
    account = Account.from_key(key)
    recorded = keystore_address(path)
    if recorded is not None and recorded != account.address:
        raise ConfigError(
            f"malformed keystore {path}: its key belongs to {account.address}, not to the recorded {recorded}"
        )
    return account


def unlock(
    path: str | os.PathLike | None = None, *, password_file: str | os.PathLike | None = None
) -> LocalAccount:
    """Load the keystore with the password from the usual sources (see :func:`read_password`)."""
    path = resolve_keystore_path(path)
    read_keystore_json(path)  # a missing file is reported before asking for a password
    return load_keystore(path, read_password(password_file=password_file))


__all__ = [
    "DEFAULT_KEYSTORE",
    "KEYSTORE_ENV",
    "PASSWORD_ENV",
    "create_keystore",
    "default_keystore_path",
    "keystore_address",
    "load_keystore",
    "read_keystore_json",
    "read_password",
    "resolve_keystore_path",
    "unlock",
    "write_private_file",
]
