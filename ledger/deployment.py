"""Deploy contracts from their artifacts and remember where they are.

The deployment file (``deployment.json`` in the current folder, or ``$FEDLEDGER_DEPLOYMENT``) records the
chain id, the RPC URL and, per contract, its address and the block it was deployed in (where the event
indexer starts). Every client loads it and checks that it talks to the same chain.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from fedcore.errors import ChainError, ConfigError
from fedcore.files import write_atomic
from ledger.chain import Sender, send_transaction
from ledger.compile import load_artifact

DEFAULT_FILE = "deployment.json"
ENV_VAR = "FEDLEDGER_DEPLOYMENT"
MAIN_CONTRACT = "FedLedger"
SPLITTER_CONTRACT = "RevenueSplitter"
CONTRACTS = (MAIN_CONTRACT, SPLITTER_CONTRACT)  # what a deployment holds, in deployment order


def default_path() -> Path:
    """``$FEDLEDGER_DEPLOYMENT`` if set, else ``deployment.json`` in the current folder."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_FILE)


@dataclass
class Deployment:
    """Where the contracts live.

    Attributes
    ----------
    chain_id : int
        Chain id of the chain they were deployed on.
    rpc_url : str or None
        JSON-RPC URL used to deploy (``"embedded"`` for the in-process chain, which dies with its process).
    contracts : dict of str to dict
        ``{name: {"address": checksum address, "block": deployment block number}}``.
    """

    chain_id: int
    rpc_url: str | None
    contracts: dict[str, dict] = field(default_factory=dict)

    def address(self, name: str = MAIN_CONTRACT) -> ChecksumAddress:
        """Checksum address of contract ``name``."""
        try:
            return self.contracts[name]["address"]
        except KeyError:
            raise ChainError(f"contract {name} is not in the deployment: run `fedledger deploy`") from None

    def block(self, name: str = MAIN_CONTRACT) -> int:
        """Block number in which ``name`` was deployed."""
        self.address(name)
        return int(self.contracts[name]["block"])

    def add(self, name: str, address: str, block: int) -> None:
        self.contracts[name] = {"address": Web3.to_checksum_address(address), "block": int(block)}

    def contract(self, w3: Web3, name: str = MAIN_CONTRACT, *, abi: list | None = None) -> Contract:
        """A web3 contract bound to ``name``'s address, with ``abi`` or else the ABI of ``name``'s artifact."""
        return w3.eth.contract(address=self.address(name), abi=abi if abi is not None else load_artifact(name)["abi"])

    def check_chain(self, w3: Web3) -> None:
        """Raise ChainError unless ``w3`` is the chain this deployment was made on."""
        chain_id = w3.eth.chain_id
        if chain_id != self.chain_id:
            raise ChainError(
                f"the deployment is for chain id {self.chain_id} but the chain answering has id {chain_id}: "
                "connect to the right chain or run `fedledger deploy` again"
            )

    def to_json(self) -> str:
        return json.dumps(
            {"chain_id": self.chain_id, "rpc_url": self.rpc_url, "contracts": self.contracts}, sort_keys=True, indent=1
        ) + "\n"

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the file atomically (a crash leaves the old file or the new one, never half of one)."""
        return write_atomic(Path(path) if path else default_path(), self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, w3: Web3 | None = None) -> Deployment:
        """Read a deployment file, and check it against ``w3``'s chain id when given.

        Raises
        ------
        ChainError
            When the file is missing or belongs to another chain.
        ConfigError
            When the file is not a valid deployment.
        """
        path = Path(path) if path else default_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            deployment = cls(int(raw["chain_id"]), raw.get("rpc_url"), dict(raw.get("contracts", {})))
        except FileNotFoundError:
            raise ChainError(f"no deployment file at {path}: run `fedledger deploy`") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"malformed deployment file {path}: {exc}") from None
        if w3 is not None:
            deployment.check_chain(w3)
        return deployment


def deploy(
    w3: Web3, name: str, *constructor_args: Any, sender: Sender, value: int = 0, artifact: dict | None = None
) -> tuple[str, int]:
    """Deploy contract ``name`` from its compiled artifact.

    Parameters
    ----------
    w3 : Web3
        The chain.
    name : str
        Contract name, i.e. ``contracts/artifacts/<name>.json``.
    *constructor_args
        Positional constructor arguments.
    sender : LocalAccount or str
        Deployer: a local account or an unlocked node address.
    value : int
        Wei for a payable constructor.
    artifact : dict, optional
        Use this artifact instead of loading ``name``'s (e.g. a test contract compiled on the fly).

    Returns
    -------
    tuple of (str, int)
        The contract's checksum address and its deployment block number.
    """
    artifact = artifact or load_artifact(name)
    if "__$" in artifact["bytecode"]:
        raise ConfigError(f"{name} needs linked libraries, which fedledger does not support: make them internal")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = send_transaction(w3, factory.constructor(*constructor_args), sender, value=value)
    if receipt["contractAddress"] is None:
        raise ChainError(f"deploying {name} created no contract (transaction {receipt['transactionHash'].hex()})")
    return Web3.to_checksum_address(receipt["contractAddress"]), int(receipt["blockNumber"])


# --- FedLedger deployment -------------------------------------------------------------------------------
# The lead defines FedLedger's constructor. This reads its inputs from the artifact ABI and matches them to
# keyword parameters by name, ignoring case, underscores and a trailing `_` (``min_stake`` fills
# ``minStake`` or ``minStake_``). Add a default here when the constructor grows an input.
FEDLEDGER_DEFAULTS: dict[str, Any] = {
    "minstake": Web3.to_wei(1, "ether"),
    "leavecooldown": 7 * 24 * 3600,
    # A round must pay at least 0.1 ETH to move reputation fully (less moves it in proportion, nothing moves none).
    "ethreputationfloor": Web3.to_wei("0.1", "ether"),
}
# Short parameter names (as the CLI options spell them) for longer constructor input names.
FEDLEDGER_ALIASES: dict[str, str] = {
    "cooldown": "leavecooldown",
    "reputationfloor": "ethreputationfloor",
}


def _key(name: str) -> str:
    return re.sub(r"_", "", name).lower()


def fedledger_constructor_inputs(artifact: dict | None = None) -> list[dict]:
    """The ``inputs`` of FedLedger's constructor, from its artifact."""
    artifact = artifact or load_artifact(MAIN_CONTRACT)
    return next((e.get("inputs", []) for e in artifact["abi"] if e.get("type") == "constructor"), [])


def deploy_fedledger(w3: Web3, sender: Sender, *, artifact: dict | None = None, **params: Any) -> Deployment:
    """Deploy ``FedLedger`` and the ``RevenueSplitter`` reading its scores; return a ``Deployment`` holding both
    (not yet saved).

    Parameters
    ----------
    w3 : Web3
        The chain.
    sender : LocalAccount or str
        Deployer. An ``address`` input named like ``governance`` defaults to it.
    artifact : dict, optional
        FedLedger's artifact, if not the committed one.
    **params
        Constructor arguments by (snake_case) name or alias, e.g. ``min_stake=10**18, cooldown=3600``;
        None means "use the default".

    Raises
    ------
    ConfigError
        On an unknown parameter or a constructor input with neither a value nor a default.
    """
    artifact = artifact or load_artifact(MAIN_CONTRACT)
    inputs = fedledger_constructor_inputs(artifact)
    known = {_key(i["name"]) for i in inputs}
    given = {}
    for name, value in params.items():
        key = _key(name)
        if key not in known and FEDLEDGER_ALIASES.get(key) in known:
            key = FEDLEDGER_ALIASES[key]
        if value is not None:
            given[key] = value
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"FedLedger's constructor has no input {unknown[0]!r} "
            f"(inputs: {', '.join(i['name'] for i in inputs) or 'none'})"
        )
    sender_address = sender if isinstance(sender, str) else sender.address
    args = []
    for i in inputs:
        key = _key(i["name"])
        if key in given:
            args.append(given[key])
        elif key in FEDLEDGER_DEFAULTS:
            args.append(FEDLEDGER_DEFAULTS[key])
        elif i["type"] == "address":
            args.append(sender_address)
        else:
            raise ConfigError(f"FedLedger needs a value for its constructor input {i['name']} ({i['type']})")
    address, block = deploy(w3, MAIN_CONTRACT, *args, sender=sender, artifact=artifact)
    rpc_url = getattr(w3.provider, "endpoint_uri", None) or "embedded"
    deployment = Deployment(chain_id=w3.eth.chain_id, rpc_url=str(rpc_url))
    deployment.add(MAIN_CONTRACT, address, block)
    deployment.add(SPLITTER_CONTRACT, *deploy(w3, SPLITTER_CONTRACT, address, sender=sender))
    return deployment
