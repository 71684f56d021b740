"""``fedledger contracts|chain|deploy``: the ledger's command group.

Handlers import web3 and friends lazily so that ``fedledger --help`` does not pay for them.
"""

from __future__ import annotations

import argparse
import os
import re
from decimal import Decimal, InvalidOperation

from fedcore.errors import ConfigError
from ledger.devchain import ENGINES, GANACHE

DEFAULT_RPC = "http://127.0.0.1:8545"
RPC_ENV = "FEDLEDGER_RPC"
_UNITS = {"wei": 0, "gwei": 9, "eth": 18, "ether": 18}


def parse_wei(text: str) -> int:
    """``"1000"`` (wei), ``"0.5ether"``, ``"0.5 eth"`` or ``"20gwei"`` -> an int of wei."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in _UNITS):
        raise argparse.ArgumentTypeError(f"not an amount: {text!r} (use e.g. 1000, 0.5ether, 20gwei)")
    try:
        wei = Decimal(match.group(1)) * (Decimal(10) ** _UNITS[unit or "wei"])
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if wei != int(wei):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of wei")
    return int(wei)


def add_rpc_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--rpc URL`` (default ``$FEDLEDGER_RPC`` or http://127.0.0.1:8545)."""
    parser.add_argument(
        "--rpc", default=os.environ.get(RPC_ENV, DEFAULT_RPC),
        help=f"JSON-RPC URL of the chain (default: ${RPC_ENV} or {DEFAULT_RPC})",
    )


def add_deployment_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--deployment PATH`` (default ``$FEDLEDGER_DEPLOYMENT`` or ./deployment.json)."""
    parser.add_argument(
        "--deployment", default=None, metavar="PATH",
        help="deployment file (default: $FEDLEDGER_DEPLOYMENT or ./deployment.json)",
    )


def audit_subcommands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``audit`` group's subcommands, so a group registered after this one adds its own (``audit verify``)
    without ledger importing it."""
    try:
        return subparsers.choices["audit"].subcommands
    except (KeyError, AttributeError):
        raise RuntimeError("register ledger.cli before any group that extends `fedledger audit`") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``contracts``, ``chain`` and ``deploy`` commands."""
    from fedcore.output import add_format_option

    contracts = subparsers.add_parser(
        "contracts", help="compile the Solidity contracts",
        description="Work with the Solidity sources in contracts/.",
    )
    contracts_sub = contracts.add_subparsers(dest="contracts_command", metavar="ACTION", required=True)
    compile_ = contracts_sub.add_parser(
        "compile", help="compile contracts/**/*.sol into contracts/artifacts/",
        description=(
            "Compile every contracts/**/*.sol (test helpers included) with solc 0.8.24 for the Shanghai EVM "
            "(optimizer on, 200 runs) and write contracts/artifacts/<Name>.json for each deployable contract. "
            "Uses a native solc 0.8.24 on PATH if there is one, else solc-js from node_modules. "
            "The output is reproducible: recompiling gives identical files."
        ),
    )
    add_format_option(compile_)
    compile_.set_defaults(func=_compile)

    chain = subparsers.add_parser(
        "chain", help="run a local development chain",
        description="Run a local chain for development and demos.",
    )
    chain_sub = chain.add_subparsers(dest="chain_command", metavar="ACTION", required=True)
    up = chain_sub.add_parser(
        "up", help="start Ganache or Anvil in the foreground (Ctrl-C stops it)",
        description=(
            "Start a development chain on 127.0.0.1 with deterministic, funded accounts (chain id 1337, the same "
            "accounts and keys on either engine): Ganache 7.9.2 (Shanghai) or Anvil 1.7.1 (Prague). Print its URL "
            "and the accounts with their private keys, and run until Ctrl-C."
        ),
    )
    up.add_argument("--engine", choices=ENGINES, default=GANACHE,
                    help="which dev chain to run (default: %(default)s)")
    up.add_argument("--port", type=int, default=8545, help="TCP port to listen on (default: %(default)s)")
    up.add_argument("--accounts", type=int, default=10, help="funded accounts to create (default: %(default)s)")
    up.add_argument("--db", default=None, metavar="DIR", help="keep the chain in DIR between runs (default: in memory)")
    up.set_defaults(func=_chain_up)
    example = chain_sub.add_parser(
        "example-bounty", help="play a scripted 2-round bounty with made-up scores, to try the audit trail",
        description=(
            "Using the node's unlocked accounts (1 sponsor, 2 aggregator, 3 a funder, 4-7 institutions), join the "
            "institutions, fund a 2-round ETH bounty, commit and finalize both rounds with made-up scores, and claim "
            "once. No model is trained: this only exercises the contracts, so `fedledger audit trace` has a story."
        ),
    )
    add_rpc_option(example)
    add_deployment_option(example)
    add_format_option(example)
    example.set_defaults(func=_example_bounty)

    deploy = subparsers.add_parser(
        "deploy", help="deploy the FedLedger contract and write the deployment file",
        description=(
            "Deploy the FedLedger contract from contracts/artifacts/FedLedger.json, sent from an unlocked account "
            "of the node, and write its address and block to the deployment file."
        ),
    )
    add_rpc_option(deploy)
    add_deployment_option(deploy)
    deploy.add_argument("--sender", default=None, metavar="ADDRESS",
                        help="unlocked node account that deploys (default: the node's first account)")
    deploy.add_argument("--min-stake", type=parse_wei, default=None, metavar="AMOUNT",
                        help="stake an institution must lock to join, e.g. 1ether (default: 1 ether)")
    deploy.add_argument("--reputation-floor", type=parse_wei, default=None, metavar="AMOUNT",
                        help="round reward from which an ETH bounty's round moves reputation fully (default 0.1ether)")
    deploy.add_argument("--cooldown", type=int, default=None, metavar="SECONDS",
                        help="seconds before a leaving institution can withdraw its stake (default: 7 days)")
    deploy.add_argument("--governance", default=None, metavar="ADDRESS",
                        help="address allowed to slash stake for proven misbehaviour (default: the sender)")
    add_format_option(deploy)
    deploy.set_defaults(func=_deploy)

    status = subparsers.add_parser(
        "status", help="show the deployment and whether its chain answers",
        description=(
            "Read the deployment file and report its chain id and contract addresses, whether the chain answers "
            "at --rpc (default: the URL recorded in the file), with the same chain id and the contracts' code."
        ),
    )
    add_deployment_option(status)
    status.add_argument("--rpc", default=None, help="JSON-RPC URL to check (default: the deployment's rpc_url)")
    add_format_option(status)
    status.set_defaults(func=_status)

    audit = subparsers.add_parser(
        "audit", help="trace a bounty from commitments to payouts",
        description="Audit a bounty from the chain's events alone.",
    )
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    audit.subcommands = audit_sub  # other groups add theirs through audit_subcommands()
    trace = audit_sub.add_parser(
        "trace", help="print a bounty's timeline: funding, rounds, commitments, scores, credits, claims, refunds",
        description=(
            "Sync the event index (SQLite, beside the deployment file unless --db) with the chain, then print every "
            "event of the bounty in chain order, and its books: funded = credited + refunded + escrowed, recomputed "
            "from events and compared with the contract."
        ),
    )
    trace.add_argument("--bounty", type=int, required=True, metavar="ID", help="the bounty id")
    add_rpc_option(trace)
    add_deployment_option(trace)
    trace.add_argument("--db", default=None, metavar="PATH", help="event index (default: <deployment>.index.sqlite)")
    add_format_option(trace)
    trace.set_defaults(func=_audit_trace)


def _compile(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from ledger.compile import ARTIFACTS_DIR, ROOT, compile_project

    artifacts = compile_project()
    rows = [
        {"contract": name, "source": a["sourcePath"], "bytecode_bytes": (len(a["deployedBytecode"]) - 2) // 2}
        for name, a in artifacts.items()
    ]
    if args.format == "json":
        emit(rows, "json")
    else:
        emit(rows)
        print(f"wrote {len(rows)} artifacts to {ARTIFACTS_DIR.relative_to(ROOT)}/")
    return 0


def _chain_up(args: argparse.Namespace) -> int:
    from ledger.devchain import run_foreground

    return run_foreground(args.engine, args.port, accounts=args.accounts, db_path=args.db,
                          out=lambda line: print(line, flush=True))


def _deploy(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from ledger.chain import EMBEDDED, connect
    from ledger.deployment import deploy_fedledger

    if args.rpc in ("", EMBEDDED):
        raise ConfigError(
            "the embedded chain lives only inside one process: start a chain with `fedledger chain up` and deploy there"
        )
    w3 = connect(args.rpc)
    sender = args.sender
    if sender is None:
        accounts = w3.eth.accounts
        if not accounts:
            raise ConfigError(f"the node at {args.rpc} has no unlocked account: pass --sender")
        sender = accounts[0]
    deployment = deploy_fedledger(
        w3, sender, min_stake=args.min_stake, cooldown=args.cooldown, governance=args.governance,
        reputation_floor=args.reputation_floor,
    )
    deployment.rpc_url = args.rpc
    path = deployment.save(args.deployment)
    emit({"chain_id": deployment.chain_id, "rpc_url": args.rpc, "file": str(path), **{
        f"{name}.{key}": value for name, info in deployment.contracts.items() for key, value in info.items()
    }}, args.format)
    return 0


def _status(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from ledger.chain import connect
    from ledger.deployment import Deployment

    deployment = Deployment.load(args.deployment)
    rpc = args.rpc or deployment.rpc_url
    w3 = connect(rpc)
    deployment.check_chain(w3)
    report = {"chain_id": deployment.chain_id, "rpc_url": rpc, "latest_block": w3.eth.block_number}
    for name in deployment.contracts:
        has_code = len(w3.eth.get_code(deployment.address(name))) > 0
        report[name] = f"{deployment.address(name)} (block {deployment.block(name)}){'' if has_code else ' NO CODE'}"
    emit(report, args.format)
    return 0


def _audit_trace(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from ledger.audit import default_index_path, format_trace, sync_index, trace
    from ledger.chain import connect
    from ledger.client import FedLedgerClient
    from ledger.deployment import Deployment

    deployment = Deployment.load(args.deployment)
    w3 = connect(args.rpc)
    client = FedLedgerClient.from_deployment(w3, deployment)
    db = args.db or default_index_path(args.deployment)
    sync_index(w3, deployment, db)
    report = trace(db, args.bounty, client)
    emit(report.to_dict() if args.format == "json" else report, args.format, text=format_trace)
    return 0


def _example_bounty(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from ledger.chain import connect
    from ledger.client import FedLedgerClient
    from ledger.deployment import Deployment
    from ledger.example import scripted_bounty

    deployment = Deployment.load(args.deployment)
    w3 = connect(args.rpc)
    accounts = w3.eth.accounts
    if len(accounts) < 8:
        raise ConfigError(f"the node at {args.rpc} has {len(accounts)} unlocked accounts; the example needs 8")
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    bounty_id = scripted_bounty(ledger, sponsor=accounts[1], aggregator=accounts[2], funder=accounts[3],
                                institutions=list(accounts[4:8]))
    emit({"bounty_id": bounty_id, "next": f"fedledger audit trace --bounty {bounty_id} --rpc {args.rpc}"}, args.format)
    return 0
