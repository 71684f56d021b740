"""Start a local JSON-RPC development chain as a child process and wait until it answers.

Two engines run the same (Shanghai) bytecode:

* ``"ganache"``: npm ``ganache`` 7.9.2, Shanghai (its last hardfork; the project was sunset in 2023).
* ``"anvil"``: Foundry's Anvil (npm ``@foundry-rs/anvil`` 1.7.1, which ships the native binary), at its
  default hardfork (Prague).

Both derive their accounts from the same mnemonic and use the same chain id, so the private keys are known
here without asking the node (tests and demos sign locally exactly as an institution would), and the
addresses and keys the README prints are the same on either engine.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fedcore.errors import ChainError
from ledger.compile import NODE_MODULES

if TYPE_CHECKING:  # eth_account is imported when accounts are made: `fedledger --help` reads ENGINES cheaply
    from eth_account.signers.local import LocalAccount

GANACHE = "ganache"
ANVIL = "anvil"
ENGINES = (GANACHE, ANVIL)
MNEMONIC = "myth like bonus scare over problem client lizard pioneer submit female collect"
CHAIN_ID = 1337
DEFAULT_ACCOUNTS = 10
DEFAULT_BALANCE_ETH = 1_000_000
START_TIMEOUT = 60
HARDFORK = {GANACHE: "Shanghai", ANVIL: "Prague"}  # what each engine runs; the contracts target Shanghai


def deterministic_accounts(count: int = DEFAULT_ACCOUNTS) -> list[LocalAccount]:
    """The first ``count`` accounts of the dev chains' mnemonic (path m/44'/60'/0'/0/i)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """True when a JSON-RPC node answers ``eth_chainId`` at ``url``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError):
        return False


@dataclass
class DevChain:
    """A running development chain.

    Attributes
    ----------
    engine : str
        ``"ganache"`` or ``"anvil"``.
    url : str
        Its JSON-RPC endpoint, ``http://127.0.0.1:<port>``.
    process : subprocess.Popen
        The node process.
    accounts : list of LocalAccount
        Its funded accounts, with private keys (``acct.key``); also unlocked on the node.
    chain_id : int
        1337.
    """

    engine: str
    url: str
    process: subprocess.Popen
    accounts: list[LocalAccount]
    chain_id: int = CHAIN_ID
    _log: IO[str] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 10) -> None:
        """Terminate the process (then kill it if it does not exit within ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> DevChain:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _ganache_command(port: int, accounts: int, balance_eth: int, db_path: Path | None) -> list[str]:
    node = shutil.which("node")
    cli = NODE_MODULES / "ganache" / "dist" / "node" / "cli.js"
    if node is None:
        raise ChainError("node is not installed: Ganache needs Node.js (or use the embedded chain)")
    if not cli.is_file():
        raise ChainError(f"ganache not found at {cli}: run `npm ci` (or `make setup`)")
    command = [
        node, str(cli),
        "--server.host", "127.0.0.1",
        "--server.port", str(port),
        "--server.ws", "false",
        "--wallet.deterministic", "true",
        "--wallet.totalAccounts", str(accounts),
        "--wallet.defaultBalance", str(balance_eth),
        "--chain.chainId", str(CHAIN_ID),
        "--chain.networkId", str(CHAIN_ID),
        "--chain.hardfork", "shanghai",
        "--logging.quiet", "true",
    ]
    if db_path:
        command += ["--database.dbPath", str(db_path)]
    return command


def anvil_binary() -> Path:
    """The native Anvil binary: the platform package ``@foundry-rs/anvil`` installed, else ``anvil`` on PATH.

    The platform binary is run directly (not the package's Node wrapper), so that stopping the process stops Anvil.
    """
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    system = platform.system().lower()
    packaged = NODE_MODULES / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if packaged.is_file():
        return packaged
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise ChainError(f"anvil not found at {packaged} nor on PATH: run `npm ci` (or `make setup`)")


def _anvil_command(port: int, accounts: int, balance_eth: int, db_path: Path | None) -> list[str]:
    command = [
        str(anvil_binary()),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--mnemonic", MNEMONIC,
        "--accounts", str(accounts),
        "--balance", str(balance_eth),
        "--chain-id", str(CHAIN_ID),
        "--silent",
    ]
    if db_path:  # loaded at start, written on exit
        command += ["--state", str(db_path / "anvil-state.json")]
    return command


_COMMANDS: dict[str, Callable[[int, int, int, Path | None], list[str]]] = {
    GANACHE: _ganache_command, ANVIL: _anvil_command,
}


def chain_command(engine: str, port: int, *, accounts: int, balance_eth: int,
                  db_path: str | os.PathLike | None) -> list[str]:
    """The command line that starts ``engine`` on 127.0.0.1:``port``.

    Raises
    ------
    ChainError
        When the engine is unknown or not installed.
    """
    if engine not in _COMMANDS:
        raise ChainError(f"unknown chain engine {engine!r}: use one of {', '.join(ENGINES)}")
    return _COMMANDS[engine](port, accounts, balance_eth, Path(db_path) if db_path else None)


def start_chain(
    engine: str = GANACHE,
    port: int | None = None,
    *,
    accounts: int = DEFAULT_ACCOUNTS,
    balance_eth: int = DEFAULT_BALANCE_ETH,
    db_path: str | os.PathLike | None = None,
    timeout: float = START_TIMEOUT,
) -> DevChain:
    """Start a development chain and wait until it answers JSON-RPC.

    Parameters
    ----------
    engine : str
        ``"ganache"`` or ``"anvil"``.
    port : int, optional
        TCP port on 127.0.0.1; a free one when omitted.
    accounts : int
        How many deterministic accounts to fund.
    balance_eth : int
        Each account's starting balance, in ether.
    db_path : path-like, optional
        Folder that keeps the chain between runs (Ganache: continuously; Anvil: written when it stops);
        in memory when omitted.
    timeout : float
        Seconds to wait for the first answer.

    Returns
    -------
    DevChain
        The handle; use it as a context manager or call ``stop()``.

    Raises
    ------
    ChainError
        When the engine is missing, the process exits (e.g. the port is taken), or it does not answer in time.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    if answers(url):
        raise ChainError(f"something already answers at {url}: choose another --port")
    if db_path:
        Path(db_path).mkdir(parents=True, exist_ok=True)
    command = chain_command(engine, port, accounts=accounts, balance_eth=balance_eth, db_path=db_path)
    # Output goes to a temporary file: a pipe nobody reads could fill up and block the node.
    log = tempfile.TemporaryFile(mode="w+")
    # Own session: Ctrl-C reaches only us, and stop() decides how the node ends.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    handle = DevChain(engine=engine, url=url, process=process, accounts=deterministic_accounts(accounts), _log=log)
    deadline = time.monotonic() + timeout
    while not answers(url):
        if process.poll() is not None:
            log.seek(0)
            tail = [line for line in log.read().splitlines() if line.strip()][-1:] or ["no output"]
            handle.stop()
            raise ChainError(f"{engine} exited with code {process.returncode}: {tail[0]}")
        if time.monotonic() > deadline:
            handle.stop()
            raise ChainError(f"{engine} did not answer at {url} within {timeout:.0f}s")
        time.sleep(0.1)
    return handle


def run_foreground(engine: str = GANACHE, port: int = 8545, *, accounts: int = DEFAULT_ACCOUNTS,
                   db_path: str | None = None, out=print) -> int:
    """Run a development chain until Ctrl-C, printing its URL and accounts; used by ``fedledger chain up``.

    The chain runs in its own session, so a signal to this process does not reach it: SIGTERM and SIGHUP (``kill``,
    a closed terminal) are turned into KeyboardInterrupt, so that the chain is stopped too instead of left running.
    """

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    with start_chain(engine, port, accounts=accounts, db_path=db_path) as chain:
        out(f"{engine.capitalize()} listening on {chain.url} (chain id {chain.chain_id}, {HARDFORK[engine]})")
        out(f"Mnemonic: {MNEMONIC}")
        out(f"Accounts (address  private key), each with {DEFAULT_BALANCE_ETH:,} ETH:")
        for i, acct in enumerate(chain.accounts):
            out(f"  ({i}) {acct.address}  0x{bytes(acct.key).hex()}")
        out("Press Ctrl-C to stop.")
        try:
            return chain.process.wait()
        except KeyboardInterrupt:
            out(f"stopping {engine.capitalize()}")
            return 0
