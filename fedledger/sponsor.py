"""``fedledger sponsor ...``: publish a task as a bounty, fund it, cancel it, pay the finished model's revenue.

Every transaction is sent by one sender, given either as

* ``--keystore PATH``: an encrypted Ethereum keystore (the standard v3 JSON that ``eth_account`` and geth write);
  the password comes from ``--password-file``, else ``$FEDLEDGER_PASSWORD``, else a prompt on the terminal,
  never from the command line; or
* ``--from ADDRESS``: an account the chain's node holds unlocked (Ganache's dev accounts).

Amounts take a unit (``1000``, ``0.5ether``, ``20gwei``). For an ERC-20 bounty the amount is in the token's base
units, and the unit only scales it: ``1ether`` means 10**18 base units (one token of a token with 18 decimals).

The sponsor never imports ``node``; it imports ``aggregator`` only to resolve round rules (``sponsor rules``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fedcore.errors import ChainError, ConfigError, ContractRevert
from fedcore.files import write_atomic
from fedcore.keystore import PASSWORD_ENV, unlock
from ledger.cli import add_deployment_option, add_rpc_option, parse_wei

DAY = 86_400


# ---------------------------------------------------------------------------------------------
# Sender: keystore or unlocked node account


def add_sender_options(parser: argparse.ArgumentParser) -> None:
    """``--keystore PATH [--password-file PATH]`` or ``--from ADDRESS``."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--keystore", metavar="PATH", help="encrypted keystore (v3 JSON) of the sponsor's account")
    who.add_argument("--from", dest="from_address", metavar="ADDRESS",
                     help="an account the chain's node holds unlocked (Ganache dev accounts)")
    parser.add_argument("--password-file", metavar="PATH",
                        help="file whose first line is the keystore password "
                             f"(default: ${PASSWORD_ENV}, else a prompt)")


def resolve_sender(args: argparse.Namespace, w3):
    """The transaction sender named by ``--keystore`` or ``--from`` (a LocalAccount or an unlocked address)."""
    from web3 import Web3

    if getattr(args, "keystore", None):
        return unlock(args.keystore, password_file=args.password_file)
    address = args.from_address
    if not Web3.is_address(address):
        raise ConfigError(f"--from {address!r} is not an Ethereum address")
    address = Web3.to_checksum_address(address)
    if address not in {Web3.to_checksum_address(a) for a in w3.eth.accounts}:
        raise ConfigError(f"the chain's node does not hold {address} unlocked: use --keystore for your own key")
    return address


def _address(value: str, option: str) -> str:
    from web3 import Web3

    if not Web3.is_address(value):
        raise ConfigError(f"{option} {value!r} is not an Ethereum address")
    return Web3.to_checksum_address(value)


# ---------------------------------------------------------------------------------------------
# Helpers


def _connect(args: argparse.Namespace, *, sender: bool):
    """(w3, FedLedgerClient) from --rpc and --deployment, acting as the sender when ``sender``."""
    from ledger.chain import connect
    from ledger.client import FedLedgerClient
    from ledger.deployment import Deployment

    deployment = Deployment.load(args.deployment)  # a missing file is one clear line, before any network
    account = None
    if sender and getattr(args, "keystore", None):  # a wrong password is reported before touching the chain
        account = unlock(args.keystore, password_file=args.password_file)
    w3 = connect(args.rpc)
    ledger = FedLedgerClient.from_deployment(w3, deployment)
    if sender:
        ledger = ledger.as_sender(account if account is not None else resolve_sender(args, w3))
    return w3, ledger


def _revenue_splitter(args: argparse.Namespace, ledger):
    """The deployment's RevenueSplitter, acting as ``ledger``'s sender."""
    from ledger.client import RevenueSplitterClient
    from ledger.deployment import Deployment

    return RevenueSplitterClient.from_deployment(ledger.w3, Deployment.load(args.deployment), sender=ledger.sender)


def existing_bounty(ledger, bounty_id: int):
    """``ledger.bounty(bounty_id)``, or ChainError ``unknown bounty id N``."""
    from ledger.client import BountyStatus

    try:
        bounty = ledger.bounty(bounty_id)
    except ContractRevert as error:
        if error.name == "UnknownBounty":
            raise ChainError(
                f"unknown bounty id {bounty_id}: this chain has {ledger.bounty_count()} bounties"
            ) from None
        raise
    if bounty.status == BountyStatus.NONE:
        raise ChainError(f"unknown bounty id {bounty_id}: this chain has {ledger.bounty_count()} bounties")
    return bounty


def _approve_if_token(w3, spender, token: str, amount: int) -> None:
    """Let the ``spender`` client's contract take ``amount`` of ``token`` from its sender (nothing to do for ETH)."""
    from ledger.client import TokenClient

    if int(token, 16) != 0:
        TokenClient(w3, token, sender=spender.sender).approve(spender.address, amount)


def file_sha256(path: str | os.PathLike) -> bytes:
    """sha256 of a file's exact bytes (what a validation-set hash on chain is)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None


def check_validation_columns(path: str | os.PathLike, spec) -> int:
    """Check the validation CSV as the aggregator will read it (:func:`fedcore.population.load_validation_set`: the
    task's columns, finite numbers, 0/1 labels, groups that fit the task's population); returns its data rows."""
    from fedcore.population import load_validation_set

    return len(load_validation_set(path, spec))


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def bounty_report(ledger, bounty_id: int) -> dict[str, Any]:
    """Everything a sponsor wants to know about one bounty, read from the contract."""
    from ledger.chain import latest_timestamp

    b = existing_bounty(ledger, bounty_id)
    now = latest_timestamp(ledger.w3)
    rounds = []
    for number in range(1, b.rounds_opened + 1):
        r = ledger.round(bounty_id, number)
        rounds.append({
            "round": number,
            "global_model_hash": _hex(r.global_model_hash),
            "new_model_hash": _hex(r.new_model_hash) if r.finalized else None,
            "opened_at": r.opened_at,
            "commit_deadline": r.commit_deadline,
            "finalized": r.finalized,
        })
    return {
        "bounty_id": bounty_id,
        "status": b.status.name.lower(),
        "sponsor": b.sponsor,
        "aggregator": b.aggregator,
        "token": "ETH" if b.is_eth else b.token,
        "task_spec_hash": _hex(b.task_spec_hash),
        "validation_set_hash": _hex(b.validation_set_hash),
        "num_rounds": b.num_rounds,
        "rounds_opened": b.rounds_opened,
        "rounds_finalized": b.rounds_finalized,
        "commit_window": b.commit_window,
        "deadline": b.deadline,
        "deadline_passed": now > b.deadline,
        "min_reputation": b.min_reputation,
        "funded": b.funded,
        "credited": b.credited,
        "refunded": b.refunded,
        "escrowed": ledger.escrow_of(bounty_id),
        "total_positive_score": b.total_positive_score,
        "rounds": rounds,
    }


def format_status(report: dict[str, Any]) -> str:
    """The status as text: the bounty's fields, then one line per round."""
    lines = []
    fields = {k: v for k, v in report.items() if k != "rounds"}
    width = max(len(k) for k in fields)
    lines += [f"{k.ljust(width)}  {v}" for k, v in fields.items()]
    for r in report["rounds"]:
        state = "finalized" if r["finalized"] else "open"
        new = f" -> {r['new_model_hash']}" if r["new_model_hash"] else ""
        lines.append(f"round {r['round']}  {state:<9}  model {r['global_model_hash']}{new}  "
                     f"commit by {r['commit_deadline']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Commands


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``fedledger sponsor rules|create-bounty|fund|cancel|status|pay-revenue|refund-remainder``."""
    from fedcore.output import add_format_option

    sponsor = subparsers.add_parser(
        "sponsor", help="publish a task as a bounty, fund, cancel, pay revenue",
        description=(
            "The sponsor's side: publish a task (its hash and the validation set's hash go on chain) with a reward "
            "in ETH or an ERC-20 token, top it up, cancel it, take back what was not earned, and pay the finished "
            f"model's revenue. Sender: --keystore (password from --password-file, ${PASSWORD_ENV} or a prompt) "
            "or --from an account the node holds unlocked."
        ),
    )
    sub = sponsor.add_subparsers(dest="sponsor_command", metavar="ACTION", required=True)

    def command(name: str, help_: str, description: str, *, sender: bool = True) -> argparse.ArgumentParser:
        # No abbreviations: a mistyped `--password X` must not be taken for `--password-file X` (and echoed).
        parser = sub.add_parser(name, help=help_, description=description, allow_abbrev=False)
        add_rpc_option(parser)
        add_deployment_option(parser)
        if sender:
            add_sender_options(parser)
        add_format_option(parser)
        return parser

    create = command(
        "create-bounty", "publish a task with a funded reward; prints the bounty id",
        "Hash the task spec (sha256 of its canonical JSON) and the validation CSV (sha256 of its exact bytes), "
        "approve the reward first when it is a token, and create the bounty with the reward escrowed.",
    )
    create.add_argument("--task", required=True, metavar="PATH",
                        help="task spec JSON (e.g. from `fedledger data heart`)")
    create.add_argument("--validation", required=True, metavar="PATH",
                        help="the validation CSV the aggregator will score on (only its hash goes on chain)")
    create.add_argument("--rules", required=True, metavar="PATH",
                        help="the round rules JSON from `fedledger sponsor rules` (only its hash goes on chain)")
    create.add_argument("--reward", required=True, type=parse_wei, metavar="AMOUNT",
                        help="reward escrowed now, e.g. 1ether (token base units for --token)")
    create.add_argument("--token", default=None, metavar="ADDRESS", help="ERC-20 reward token (default: ETH)")
    create.add_argument("--aggregator", required=True, metavar="ADDRESS", help="the only account that runs the rounds")
    create.add_argument("--rounds", required=True, type=int, metavar="N", help="number of federated rounds")
    create.add_argument("--commit-window", required=True, type=int, metavar="SECONDS",
                        help="seconds institutions have to commit after a round opens")
    create.add_argument("--deadline-days", required=True, type=float, metavar="D",
                        help="days from now (chain time) after which the sponsor may cancel")
    create.add_argument("--min-reputation", type=int, default=0, metavar="BPS",
                        help="reputation (basis points, 0-10000) an institution needs to commit (default: 0)")
    create.add_argument("--recovery-grace", type=int, default=None, metavar="SECONDS",
                        help="seconds after an open round's commit window from which the sponsor may cancel a bounty "
                             "whose round is still not finalized (default: one hour)")
    create.set_defaults(func=_create_bounty)

    rules = sub.add_parser(
        "rules", help="resolve and write a bounty's round rules (strategy, scorer, utility, seed); prints their hash",
        description="Write every setting that decides a round's aggregate and scores, with each default spelled out, "
                    "to a JSON file. Its sha256 goes on chain with `create-bounty --rules`: from then on the "
                    "aggregator, every node and every auditor use exactly these rules, and nobody can change them "
                    "after seeing the updates.", allow_abbrev=False)
    rules.add_argument("--task", required=True, metavar="PATH", help="the bounty's task spec JSON")
    rules.add_argument("--out", required=True, metavar="PATH", help="where to write the rules JSON")
    rules.add_argument("--strategy", default="fedavg",
                       help="aggregation strategy: fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, "
                            "trimmed_mean, krum, multikrum (default: %(default)s)")
    rules.add_argument("--strategy-params", default="{}", metavar="JSON",
                       help="strategy settings, e.g. '{\"mu\": 0.1}'")
    rules.add_argument("--scorer", default="gtg", help="contribution estimator (default: %(default)s)")
    rules.add_argument("--scorer-params", default="{}", metavar="JSON", help="estimator settings as a JSON object")
    rules.add_argument("--utility-metric", default=None,
                       help="metric of the coalition utility: neg_loss (default), accuracy, auc, or task")
    rules.add_argument("--seed", type=int, default=0, help="root of every round's scoring seed (default: 0)")
    add_format_option(rules)
    rules.set_defaults(func=_write_rules)

    fund = command("fund", "top up a bounty (anyone may)",
                   "Add AMOUNT to an active bounty's escrow (approving a token first).")
    fund.add_argument("--bounty", type=int, required=True, metavar="ID")
    fund.add_argument("--amount", type=parse_wei, required=True, metavar="AMOUNT")
    fund.set_defaults(func=_fund)

    cancel = command("cancel", "cancel a bounty and be refunded what was not credited",
                     "Allowed before the first round opens, or after the deadline. Credited rewards stay claimable.")
    cancel.add_argument("--bounty", type=int, required=True, metavar="ID")
    cancel.set_defaults(func=_cancel)

    status = command("status", "a bounty's parameters, status, books and rounds",
                     "Read a bounty from the contract: parameters, status, funded/credited/refunded/escrowed, rounds.",
                     sender=False)
    status.add_argument("--bounty", type=int, required=True, metavar="ID")
    status.set_defaults(func=_status)

    revenue = command("pay-revenue", "pay revenue of a completed bounty's model to its contributors",
                      "Pay AMOUNT into the bounty's revenue splitter; contributors claim shares in proportion to their "
                      "cumulative positive scores.")
    revenue.add_argument("--bounty", type=int, required=True, metavar="ID")
    revenue.add_argument("--amount", type=parse_wei, required=True, metavar="AMOUNT")
    revenue.add_argument("--token", default=None, metavar="ADDRESS", help="ERC-20 token paid (default: ETH)")
    revenue.set_defaults(func=_pay_revenue)

    remainder = command("refund-remainder", "take back what a completed bounty could not credit",
                        "After the last round, refund the escrow no round credited (rounds where no update scored "
                        "above 0).")
    remainder.add_argument("--bounty", type=int, required=True, metavar="ID")
    remainder.set_defaults(func=_refund_remainder)


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{option} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} must be a JSON object")
    return value


def _write_rules(args: argparse.Namespace) -> int:
    from aggregator.rules import resolve_rules
    from fedcore.output import emit
    from fedcore.rules import rules_hash_hex
    from fedcore.task import TaskSpec

    if args.seed < 0:
        raise ConfigError("--seed must be >= 0")
    rules = resolve_rules(
        spec=TaskSpec.load(args.task), strategy=args.strategy,
        strategy_params=_json_object(args.strategy_params, "--strategy-params"), estimator=args.scorer,
        estimator_params=_json_object(args.scorer_params, "--scorer-params"), utility_metric=args.utility_metric,
        seed=args.seed,
    )
    write_atomic(args.out, (json.dumps(rules.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8"))
    emit({"rules": str(args.out), "rules_hash": rules_hash_hex(rules), **rules.to_dict()}, args.format)
    return 0


def _create_bounty(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from fedcore.rules import RoundRules, rules_hash
    from fedcore.task import TaskSpec, task_hash
    from ledger.chain import latest_timestamp
    from ledger.client import DEFAULT_RECOVERY_GRACE, ETH, BountyParams

    spec = TaskSpec.load(args.task)
    rules = RoundRules.load(args.rules)
    validation_rows = check_validation_columns(args.validation, spec)
    validation_hash = file_sha256(args.validation)
    aggregator = _address(args.aggregator, "--aggregator")
    token = _address(args.token, "--token") if args.token else ETH
    if args.rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    if args.commit_window < 1:
        raise ConfigError("--commit-window must be at least 1 second")
    if args.recovery_grace is not None and args.recovery_grace < 1:
        raise ConfigError("--recovery-grace must be at least 1 second")
    if not 0 <= args.min_reputation <= 10_000:
        raise ConfigError("--min-reputation is in basis points: 0 to 10000")
    if not args.deadline_days > 0:
        raise ConfigError("--deadline-days must be positive")
    if args.reward <= 0:
        raise ConfigError("--reward must be positive")
    w3, ledger = _connect(args, sender=True)
    deadline = latest_timestamp(w3) + int(round(args.deadline_days * DAY))
    params = BountyParams(task_spec_hash=task_hash(spec), validation_set_hash=validation_hash,
                          aggregator=aggregator, num_rounds=args.rounds,
                          commit_window=args.commit_window, deadline=deadline, min_reputation=args.min_reputation,
                          token=token, rules_hash=rules_hash(rules),
                          recovery_grace=args.recovery_grace or DEFAULT_RECOVERY_GRACE)
    _approve_if_token(w3, ledger, token, args.reward)
    bounty_id = ledger.create_bounty(params, args.reward)
    emit({
        "bounty_id": bounty_id,
        "sponsor": ledger.sender_address,
        "aggregator": aggregator,
        "token": "ETH" if token == ETH else token,
        "reward": args.reward,
        "task_spec_hash": _hex(params.task_spec_hash),
        "validation_set_hash": _hex(validation_hash),
        "rules_hash": _hex(params.rules_hash),
        "validation_rows": validation_rows,
        "num_rounds": args.rounds,
        "commit_window": args.commit_window,
        "deadline": deadline,
        "min_reputation": args.min_reputation,
        "recovery_grace": params.recovery_grace,
    }, args.format)
    return 0


def _fund(args: argparse.Namespace) -> int:
    from fedcore.output import emit

    if args.amount <= 0:
        raise ConfigError("--amount must be positive")
    w3, ledger = _connect(args, sender=True)
    bounty = existing_bounty(ledger, args.bounty)
    _approve_if_token(w3, ledger, bounty.token, args.amount)
    ledger.fund_bounty(args.bounty, args.amount)
    after = ledger.bounty(args.bounty)
    emit({"bounty_id": args.bounty, "amount": args.amount, "funded": after.funded,
          "escrowed": ledger.escrow_of(args.bounty)}, args.format)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from fedcore.output import emit

    _, ledger = _connect(args, sender=True)
    existing_bounty(ledger, args.bounty)
    receipt = ledger.cancel_bounty(args.bounty)
    refunded = sum(e["refunded"] for e in ledger.events(receipt, "BountyCancelled"))
    after = ledger.bounty(args.bounty)
    emit({"bounty_id": args.bounty, "status": after.status.name.lower(), "refunded": refunded,
          "credited": after.credited}, args.format)
    return 0


def _status(args: argparse.Namespace) -> int:
    from fedcore.output import emit

    _, ledger = _connect(args, sender=False)
    emit(bounty_report(ledger, args.bounty), args.format, text=format_status)
    return 0


def _pay_revenue(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from ledger.client import ETH

    if args.amount <= 0:
        raise ConfigError("--amount must be positive")
    token = _address(args.token, "--token") if args.token else ETH
    w3, ledger = _connect(args, sender=True)
    existing_bounty(ledger, args.bounty)
    splitter = _revenue_splitter(args, ledger)
    _approve_if_token(w3, splitter, token, args.amount)
    splitter.pay_revenue(args.bounty, args.amount, token)
    emit({"bounty_id": args.bounty, "token": "ETH" if token == ETH else token, "amount": args.amount,
          "revenue_total": splitter.revenue_total(args.bounty, token)}, args.format)
    return 0


def _refund_remainder(args: argparse.Namespace) -> int:
    from fedcore.output import emit

    _, ledger = _connect(args, sender=True)
    existing_bounty(ledger, args.bounty)
    receipt = ledger.refund_remainder(args.bounty)
    refunded = sum(e["amount"] for e in ledger.events(receipt, "RemainderRefunded"))
    after = ledger.bounty(args.bounty)
    emit({"bounty_id": args.bounty, "refunded": refunded, "total_refunded": after.refunded,
          "escrowed": ledger.escrow_of(args.bounty)}, args.format)
    return 0
