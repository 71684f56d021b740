"""``fedledger node ...``: the institution's commands.

``init`` creates the encrypted keystore; ``join`` registers with a stake; ``train`` takes part in a
bounty round after round; ``status`` shows registration, stake, reputation and rewards; ``claim``
withdraws a bounty's rewards.

The keystore password comes from ``--password-file``, ``$FEDLEDGER_PASSWORD`` or a prompt, never
from the command line. Handlers import web3, torch and friends lazily so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fedcore.errors import ConfigError
from ledger.cli import add_deployment_option, add_rpc_option, parse_wei

NO_PASSWORD_ARGUMENT = (
    "passwords are never taken on the command line (shell history and `ps` would show them): "
    "use --password-file FILE, the FEDLEDGER_PASSWORD environment variable, or the prompt"
)


class _RefusePassword(argparse.Action):
    """``--password``: refused with one line, without echoing the value."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"error: {NO_PASSWORD_ARGUMENT}", file=sys.stderr)
        sys.exit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _add_keystore_options(parser: argparse.ArgumentParser, *, password: bool = True) -> None:
    parser.add_argument(
        "--keystore", default=None, metavar="PATH",
        help="encrypted keystore file (default: $FEDLEDGER_KEYSTORE or ~/.fedledger/keystore.json)",
    )
    if password:
        parser.add_argument(
            "--password-file", default=None, metavar="FILE",
            help="read the keystore password from FILE (else $FEDLEDGER_PASSWORD, else a prompt)",
        )
        parser.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)


def _add_chain_options(parser: argparse.ArgumentParser) -> None:
    add_rpc_option(parser)
    add_deployment_option(parser)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``node`` command group."""
    from fedcore.output import add_format_option

    node = subparsers.add_parser(
        "node", help="the institution's side: keystore, join, train, status, claim",
        description=(
            "Act as an institution: create an encrypted identity, join the federation with a stake, take part in "
            "a bounty's rounds with your own data (which never leaves this machine), and claim the rewards."
        ),
        allow_abbrev=False,
    )
    sub = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)

    init = sub.add_parser(
        "init", help="create an encrypted keystore and print its address", allow_abbrev=False,
        description=(
            "Create a new Ethereum key (or import one with --import-key-file) and save it encrypted with scrypt "
            "(Web3 Secret Storage, mode 0600). The password is read from --password-file, $FEDLEDGER_PASSWORD or "
            "a prompt (asked twice). Refuses to replace an existing keystore without --force."
        ),
    )
    _add_keystore_options(init)
    init.add_argument("--force", action="store_true",
                      help="replace an existing keystore (the old file is kept beside it as .bak-<time>)")
    init.add_argument("--import-key-file", default=None, metavar="FILE",
                      help="import the hex private key in FILE instead of generating a new one")
    add_format_option(init)
    init.set_defaults(func=_init)

    join = sub.add_parser(
        "join", help="register as an institution, locking a stake", allow_abbrev=False,
        description="Register this keystore's address with the FedLedger contract, sending AMOUNT as stake.",
    )
    join.add_argument("--stake", required=True, type=parse_wei, metavar="AMOUNT",
                      help="stake to lock, e.g. 1ether, 0.5eth, 10000000gwei (at least the contract's minimum)")
    join.add_argument("--name", required=True, help="the institution's public name")
    join.add_argument("--uri", default="", help="URI of public metadata about the institution (optional)")
    _add_keystore_options(join)
    _add_chain_options(join)
    add_format_option(join)
    join.set_defaults(func=_join)

    train = sub.add_parser(
        "train", help="take part in a bounty: train, commit and upload every round", allow_abbrev=False,
        description=(
            "Take part in bounty ID until it is completed or cancelled: each open round, download the global model, "
            "check its hash against the chain, train on --data, save the update, commit its sha256 on chain and "
            "upload it signed. Restarting with the same --state-dir resumes without committing twice. Only the "
            "update bytes leave this machine."
        ),
    )
    train.add_argument("--bounty", required=True, type=_positive_int, metavar="ID", help="bounty to take part in")
    train.add_argument("--data", required=True, metavar="CSV",
                       help="this institution's CSV: a header row with the task's feature and label columns, numeric")
    train.add_argument("--aggregator", required=True, metavar="URL", help="the bounty's aggregator, e.g. http://127.0.0.1:8000")
    train.add_argument("--state-dir", default=None, metavar="DIR",
                       help="where updates and progress are kept "
                            "(default: $FEDLEDGER_NODE_STATE_DIR or ~/.fedledger/state/<address>)")
    train.add_argument("--rounds-max", type=_positive_int, default=None, metavar="N",
                       help="stop after committing in N rounds (default: until the bounty ends)")
    train.add_argument("--poll-seconds", type=_positive_float, default=2.0, metavar="S",
                       help="seconds between polls of the aggregator (default: %(default)s)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--gasless", action="store_true",
                       help="sign each commitment (EIP-712) and hand it over with the upload for the aggregator to "
                            "post in its batch, instead of committing on chain (train without it to commit yourself)")
    _add_keystore_options(train)
    _add_chain_options(train)
    add_format_option(train)
    train.set_defaults(func=_train)

    status = sub.add_parser(
        "status", help="registration, stake, reputation and rewards", allow_abbrev=False,
        description=(
            "Show an institution's registration, stake and reputation, and per bounty its unclaimed reward and "
            "cumulative score (every bounty where it has either, or just --bounty), and, once `node train` has "
            "built its personalized model, its own gain: that model against a local-only model it trained on the same "
            "rows, both on its own held-out part. Needs no password."
        ),
    )
    status.add_argument("--bounty", type=_non_negative_int, default=None, metavar="ID", help="only this bounty")
    status.add_argument("--state-dir", default=None, metavar="DIR",
                        help="the node's state folder, as given to `node train` (default: $FEDLEDGER_NODE_STATE_DIR or "
                             "~/.fedledger/state/<address>)")
    status.add_argument("--address", default=None, help="look at this address instead of the keystore's")
    _add_keystore_options(status, password=False)
    _add_chain_options(status)
    add_format_option(status)
    status.set_defaults(func=_status)

    claim = sub.add_parser(
        "claim", help="withdraw the rewards credited by a bounty", allow_abbrev=False,
        description="Withdraw everything bounty ID credited to this institution, in the bounty's asset.",
    )
    claim.add_argument("--bounty", required=True, type=_positive_int, metavar="ID")
    _add_keystore_options(claim)
    _add_chain_options(claim)
    add_format_option(claim)
    claim.set_defaults(func=_claim)


# -- plumbing --------------------------------------------------------------------------------------------
def _connect(rpc: str):
    """The chain (tests replace this to hand in their embedded chain)."""
    from ledger.chain import connect

    return connect(rpc)


def _unlock(args: argparse.Namespace):
    from fedcore.keystore import unlock

    return unlock(args.keystore, password_file=args.password_file)


def _ledger(args: argparse.Namespace, sender=None):
    from ledger.client import FedLedgerClient
    from ledger.deployment import Deployment

    deployment = Deployment.load(args.deployment)
    w3 = _connect(args.rpc)
    return FedLedgerClient.from_deployment(w3, deployment, sender=sender)


def _ether(wei: int) -> str:
    from decimal import Decimal

    text = format(Decimal(int(wei)) / Decimal(10**18), "f")
    return (text.rstrip("0").rstrip(".") if "." in text else text) + " ETH"


# -- handlers --------------------------------------------------------------------------------------------
def _init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fedcore.errors import NodeError
    from fedcore.keystore import create_keystore, read_password, resolve_keystore_path
    from fedcore.output import emit

    path = resolve_keystore_path(args.keystore)
    if path.exists() and not args.force:
        raise NodeError(f"a keystore already exists at {path}: pass --force to replace it "
                        "(the old one is kept as a backup)")
    private_key = None
    if args.import_key_file:
        key_path = Path(args.import_key_file).expanduser()
        try:
            private_key = key_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise NodeError(f"cannot read the key file {key_path}") from None
    password = read_password(password_file=args.password_file, confirm=True)
    account, backup = create_keystore(path, password, force=args.force, private_key=private_key)
    report: dict[str, Any] = {"address": account.address, "keystore": str(path)}
    if backup is not None:
        report["backup"] = str(backup)
    emit(report, args.format)
    return 0


def _join(args: argparse.Namespace) -> int:
    from fedcore.errors import NodeError
    from fedcore.output import emit

    account = _unlock(args)
    ledger = _ledger(args, sender=account)
    if not args.name.strip():
        raise ConfigError("--name must not be empty")
    current = ledger.institution(account.address)
    if current.registered:
        raise NodeError(f"{account.address} is already registered (stake {_ether(current.stake)})")
    minimum = ledger.min_stake()
    if args.stake < minimum:
        raise NodeError(f"a stake of {_ether(args.stake)} is below the contract's minimum of {_ether(minimum)}")
    balance = ledger.w3.eth.get_balance(account.address)
    if balance < args.stake:
        raise NodeError(f"{account.address} holds {_ether(balance)}, "
                        f"less than the stake of {_ether(args.stake)} (plus gas)")
    receipt = ledger.join(args.name, args.uri, stake=args.stake)
    joined = ledger.institution(account.address)
    emit({
        "address": account.address, "name": args.name, "stake_wei": joined.stake, "stake": _ether(joined.stake),
        "reputation": joined.reputation, "tx": "0x" + bytes(receipt["transactionHash"]).hex(),
    }, args.format)
    return 0


def _train(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from node.remote import AggregatorClient
    from node.runner import open_runner_for_site

    account = _unlock(args)
    ledger = _ledger(args)
    progress = False if args.no_progress else None

    def echo(line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    with AggregatorClient(args.aggregator) as aggregator:
        runner = open_runner_for_site(
            ledger=ledger, aggregator=aggregator, account=account, bounty_id=args.bounty, data_path=args.data,
            state_dir=args.state_dir, poll_seconds=args.poll_seconds, rounds_max=args.rounds_max,
            progress=progress, echo=echo, gasless=args.gasless,
        )
        records = runner.run()
    rows = [record.to_dict() for record in records]
    if args.format == "json":
        emit({"bounty": args.bounty, "address": account.address, "finished": runner.finished, "rounds": rows}, "json")
        return 0
    table = [
        {
            "round": r["round"], "status": r["status"], "sha256": (r["sha256"] or "")[:18],
            "samples": r["samples"] if r["samples"] is not None else "",
            "loss": (f"{r['metrics']['loss_before']:.4f}->{r['metrics']['loss_after']:.4f}"
                     if "loss_after" in r["metrics"] else ""),
            "upload": r["upload_status"] or "", "commit_tx": (r["commit_tx"] or "")[:18],
        }
        for r in rows
    ]
    if table:
        emit(table)
    ending = runner.finished or ("stopped at --rounds-max" if args.rounds_max else "stopped")
    print(f"bounty {args.bounty}: {ending}; took part in "
          f"{sum(1 for r in rows if r['sha256'])} round(s) as {account.address}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from eth_utils import to_checksum_address

    from fedcore.errors import NodeError
    from fedcore.keystore import keystore_address, resolve_keystore_path
    from fedcore.output import emit

    if args.address:
        try:
            address = to_checksum_address(args.address)
        except ValueError:
            raise ConfigError(f"not an address: {args.address!r}") from None
    else:
        recorded = keystore_address(args.keystore)
        if recorded is None:
            raise NodeError(f"keystore {resolve_keystore_path(args.keystore)} records no address: pass --address")
        address = to_checksum_address(recorded)
    ledger = _ledger(args)
    inst = ledger.institution(address)
    count = ledger.bounty_count()
    if args.bounty is not None and not 1 <= args.bounty <= count:
        raise NodeError(f"bounty {args.bounty} does not exist (this ledger has {count})")
    ids = [args.bounty] if args.bounty is not None else range(1, count + 1)
    from node.runner import default_state_dir, read_personal

    state_dir = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir(address)
    bounties = []
    for bounty_id in ids:
        unclaimed, cumulative = ledger.contribution_of(bounty_id, address)
        if args.bounty is None and not (unclaimed or cumulative):
            continue
        bounty = ledger.bounty(bounty_id)
        bounties.append({
            "bounty": bounty_id, "status": bounty.status.name.lower(),
            "token": "ETH" if bounty.is_eth else bounty.token,
            "unclaimed": unclaimed, "cumulative_score": cumulative,
            "personal": read_personal(state_dir / str(bounty_id)),
        })
    report = {
        "address": address, "registered": inst.registered, "stake": inst.stake, "reputation": inst.reputation,
        "joined_at": inst.joined_at, "leave_requested_at": inst.leave_requested_at,
        "balance": ledger.w3.eth.get_balance(address), "bounties": bounties,
    }
    if args.format == "json":
        emit(report, "json")
        return 0
    from ledger.client import REPUTATION_ONE, SCORE_SCALE

    lines = {
        "address": address,
        "registered": "yes" if inst.registered else ("left" if inst.ever_joined else "no"),
        "stake": _ether(inst.stake),
        "reputation": f"{inst.reputation} ({inst.reputation / REPUTATION_ONE:.2%})",
        "balance": _ether(report["balance"]),
    }
    emit(lines)
    if bounties:
        print()
        emit([
            {"bounty": b["bounty"], "status": b["status"],
             "unclaimed": _ether(b["unclaimed"]) if b["token"] == "ETH" else f"{b['unclaimed']} (token {b['token']})",
             "cumulative_score": f"{b['cumulative_score'] / SCORE_SCALE:.6f}", "own gain": _gain(b["personal"])}
            for b in bounties
        ])
    return 0


def _gain(personal: dict | None) -> str:
    """One cell: the personalized model against the local-only one, on the institution's held-out rows."""
    if not personal:
        return ""
    return (f"{personal['gain']:+.3f} ({personal['accuracy_personalized']:.3f} personalized vs "
            f"{personal['accuracy_alone']:.3f} alone, {personal['held_out_rows']} held-out rows)")


def _claim(args: argparse.Namespace) -> int:
    from fedcore.errors import NodeError
    from fedcore.output import emit

    account = _unlock(args)
    ledger = _ledger(args, sender=account)
    count = ledger.bounty_count()
    if not 1 <= args.bounty <= count:
        raise NodeError(f"bounty {args.bounty} does not exist (this ledger has {count})")
    unclaimed, _ = ledger.contribution_of(args.bounty, account.address)
    if unclaimed == 0:
        raise NodeError(f"nothing to claim: bounty {args.bounty} owes {account.address} nothing")
    bounty = ledger.bounty(args.bounty)
    amount = ledger.claim(args.bounty)
    emit({
        "bounty": args.bounty, "address": account.address, "claimed": amount,
        "asset": "ETH" if bounty.is_eth else bounty.token,
        **({"claimed_eth": _ether(amount)} if bounty.is_eth else {}),
    }, args.format)
    return 0
