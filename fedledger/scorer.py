"""``fedledger scorer attest|serve``: a member of a bounty's scoring committee other than its aggregator.

A scorer (the sponsor's key, an auditor's, any key the sponsor named at creation) trusts neither the aggregator nor
its scores. For a round whose commit window closed on chain it

1. fetches the round's accepted uploads from the aggregator, as a committee member (requests signed with its key,
   :func:`fedcore.attestations.sign_fetch`; the aggregator serves members only, and only once the window closed);
2. keeps, exactly as the aggregator must (:func:`aggregator.service.verify.select_updates`), the invited committers
   whose bytes bind to their on-chain commitment, with the chain's sample counts;
3. runs the one round computation, :func:`aggregator.rounds.compute_round`, with the bounty's rules and its own copy
   of the validation set (task, rules and validation set are checked against the bounty's hashes first), from the
   global model the chain announced and the round state it carried from the round it settled before (when the
   chain opened this round with the model that state goes with), else replayed from the chain's finalized rounds;
4. signs the outcome (EIP-712, :func:`fedcore.attestations.sign_outcome`) and posts it to the aggregator, which
   finalizes once a quorum of members attested the same outcome;
5. once the round is over on chain, compares its outcome with the finalized one and, if they differ, puts its own
   on record (``recordDissent``). A lapsed round (no quorum in time) has no outcome to dissent from.

Every scorer recomputes from the uploads the aggregator lists, so an upload the aggregator silently drops is left
out by all of them alike and the outcomes still agree. What a scorer can see is the chain: an invited institution
that committed in the round but whose upload the aggregator does not serve is named in the scorer's record, under
``refused`` with the aggregator's reason when the listing carries its refusal of that upload (a RejectionCode and
detail), else under ``unserved`` (and in its log). That makes a silent drop visible, not undone: the scorer cannot
tell it from an institution that never uploaded, a stated reason is the aggregator's word, and so is the
invitation list. ``audit trace`` shows the same from the auditor's side (committed, not scored; with ``--aggregator``,
which of those the aggregator does not serve and the reason it recorded).

``attest`` does this for one round; ``serve`` for every round of the bounty until it is over.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcore.errors import AggregatorError, ConfigError, FedLedgerError
from fedcore.types import Digest
from fedledger.audit_verify import HttpAggregator, NotServed

log = logging.getLogger("fedledger.scorer")

#: What a scorer found for a round (the ``--format json`` report of ``attest``, one line per round of ``serve``).
#: ``status``: ``attested`` (posted; round still open), ``agreed`` (finalized with this outcome), ``dissented``
#: (finalized with another outcome; dissent recorded), ``lapsed`` (closed without an outcome).


class CommitteeAggregator(HttpAggregator):
    """The aggregator's API as a committee member sees it: updates of an unfinalized round through the signed
    committee routes; models and finalized rounds through the public ones."""

    def __init__(self, url: str, account, *, chain_id: int, contract: str, bounty_id: int, **kwargs: Any):
        super().__init__(url, **kwargs)
        self.account = account
        self.chain_id, self.contract, self.bounty_id = int(chain_id), contract, int(bounty_id)

    def _signed(self, round_: int, item: str) -> dict[str, str]:
        from fedcore.attestations import sign_fetch
        from fedcore.protocol import SCORER_SIGNATURE_HEADER, SCORER_TIME_HEADER

        now = int(time.time())
        signature = sign_fetch(self.account, chain_id=self.chain_id, contract=self.contract, bounty_id=self.bounty_id,
                               round_=round_, item=item, issued_at=now)
        return {SCORER_SIGNATURE_HEADER: signature, SCORER_TIME_HEADER: str(now)}

    def committee_round(self, round_: int):
        from fedcore.protocol import CommitteeRound

        response = self._get(f"/bounties/{self.bounty_id}/rounds/{round_}/committee/updates",
                             self._signed(round_, "list"))
        return CommitteeRound.model_validate_json(response.content)

    def committee_update(self, round_: int, sha256_hex: str) -> bytes:
        bare = Digest(sha256_hex).bare
        return self._get(f"/bounties/{self.bounty_id}/rounds/{round_}/committee/updates/{bare}",
                         self._signed(round_, bare)).content

    def post_attestation(self, round_: int, body: dict) -> dict:
        import httpx

        try:
            response = self._client.post(f"/bounties/{self.bounty_id}/rounds/{round_}/attestations", json=body)
        except httpx.TransportError as error:
            raise AggregatorError(f"no aggregator answers at {self.url} ({type(error).__name__})") from None
        if response.status_code != 202:
            raise NotServed(f"POST attestation answered {response.status_code} {response.text[:200]}")
        return response.json()


@dataclass
class RoundResult:
    """One round as this scorer saw it."""

    round: int
    status: str
    new_model_hash: str | None = None
    participants: list[str] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)
    outcome_digest: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    unserved: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    finalized_model_hash: str | None = None
    dissent_tx: str | None = None

    @property
    def model_hash(self) -> bytes:
        if self.new_model_hash is None:
            raise AggregatorError(f"round {self.round} has no computed outcome")
        return bytes(Digest(self.new_model_hash))

    def to_dict(self) -> dict:
        return {"round": self.round, "status": self.status, "new_model_hash": self.new_model_hash,
                "participants": self.participants, "scores": [str(s) for s in self.scores],
                "outcome_digest": self.outcome_digest, "left_out": self.left_out, "unserved": self.unserved,
                "refused": self.refused,
                "finalized_model_hash": self.finalized_model_hash, "dissent_tx": self.dissent_tx}


@dataclass(frozen=True)
class CarriedState:
    """The round state a scorer carries into round ``round`` from the one it scored before, and the global model
    that round must open with on chain (checked before the state is used)."""

    round: int
    model_hash: bytes
    state: dict


@dataclass
class Scorer:
    """A committee member scoring one bounty's rounds.

    Parameters
    ----------
    client : FedLedgerClient
        With this scorer's account as sender (it pays for its dissents).
    source : CommitteeAggregator
    spec, rules, validation
        The bounty's task, round rules and validation set (:func:`check_inputs` compares them with the chain).
    replay : callable, optional
        ``round -> round state before it``, replayed from the chain's finalized rounds (only asked when the rules
        carry state from round to round and the scorer carries none that extends to the round: the first round it
        scores, or after a round finalized with another outcome than its own).
    tamper : callable, optional
        TEST-ONLY: changes the scores before signing (the e2e test's dishonest scorer); never set in normal use.
    computation : callable, optional
        The round computation, :func:`aggregator.rounds.compute_round` (a seam for tests that count its calls).

    A scorer that settles round r carries its round state into round r + 1 (the state after r when r was finalized
    with its outcome, the state before r when r lapsed), with the model round r + 1 must open with: a serving
    scorer runs one round computation per round instead of replaying every earlier round.
    """

    client: Any
    account: Any
    source: CommitteeAggregator
    bounty_id: int
    spec: Any
    rules: Any
    validation: Any
    replay: Callable[[int], dict] | None = None
    tamper: Callable[[dict[str, int]], dict[str, int]] | None = None
    computation: Callable[..., Any] | None = None
    carried: CarriedState | None = field(default=None, init=False, repr=False)
    _computed: dict[int, tuple[CarriedState, dict]] = field(default_factory=dict, init=False, repr=False)

    def compute(self, number: int) -> tuple[RoundResult, Any]:
        """This scorer's outcome of round ``number`` (its window must have closed); returns it unsigned and the
        round computation's full result."""
        from aggregator.rounds import RoundInputs, compute_round
        from aggregator.service.verify import select_updates
        from fedcore.codec import decode, describe
        from fedcore.commitments import bind_commitment
        from fedcore.types import Update

        chain_round = self.client.round(self.bounty_id, number)
        listing = self.source.committee_round(number)
        if Digest(listing.global_model_hash) != Digest(chain_round.global_model_hash):
            raise AggregatorError(f"round {number}: the aggregator lists model {listing.global_model_hash}, the chain "
                                  f"opened it with 0x{bytes(chain_round.global_model_hash).hex()}")
        model = self.source.model(self.bounty_id, listing.global_model_hash)
        if Digest.of(model) != Digest(chain_round.global_model_hash):
            raise AggregatorError(f"round {number}: the served global model does not hash to the chain's")
        global_weights = decode(model)
        commitments = self.client.commitments(self.bounty_id, number)
        chain_id, contract = int(self.client.w3.eth.chain_id), self.client.address

        def binding(institution: str, sha: bytes) -> bytes:
            return bind_commitment(chain_id=chain_id, contract=contract, bounty_id=self.bounty_id, round_=number,
                                   institution=institution, update_sha256=sha)

        uploads = {u.institution: Digest(u.sha256).bare for u in listing.uploads}
        refusals = {r.institution: f"{r.code}: {r.detail}" for r in listing.refused}
        kept, left_out = select_updates(commitments, uploads, binding, listing.selected, refusals)
        unserved, refused = not_served(commitments, uploads, listing.selected, refusals)
        for who, why in unserved.items():
            log.warning("round %d: %s %s", number, who, why)
        for who, why in refused.items():
            log.info("round %d: %s committed; the aggregator refused its upload (%s)", number, who, why)
        updates = []
        for who, match in sorted(kept.items()):
            try:
                data = self.source.committee_update(number, match.sha256)
            except NotServed as error:
                left_out[who] = f"stored update unusable: {error}"
                continue
            if binding(who, bytes(Digest.of(data))) != match.commitment.update_hash:  # the bytes, not the listing
                left_out[who] = "stored update does not match the commitment"
                continue
            try:
                arrays = decode(data, describe(global_weights))
            except FedLedgerError as error:
                left_out[who] = f"stored update unusable: {error}"
                continue
            updates.append(Update(who, arrays, match.commitment.sample_count))
        opened_with = bytes(chain_round.global_model_hash)
        state = self._state_before(number, opened_with)
        inputs = RoundInputs(round=number, global_weights=global_weights, updates=tuple(updates), strategy_state=state,
                             X_val=self.validation.X, y_val=self.validation.y, groups_val=self.validation.groups)
        outcome = (self.computation or compute_round)(inputs, self.rules, self.spec)
        self._computed = {number: (CarriedState(number, opened_with, state), outcome.strategy_state)}
        fixed = outcome.fixed_point
        if self.tamper is not None:
            fixed = self.tamper(fixed)
        hashes = {a: bytes(c.update_hash) for a, c in commitments.items()}
        participants, scores = self.client.outcome(self.bounty_id, number, fixed, commitments=hashes)
        result = RoundResult(number, "computed", "0x" + outcome.model_hash.hex(), participants, scores,
                             left_out={**left_out, **outcome.rejected}, unserved=unserved, refused=refused)
        return result, outcome

    def _state_before(self, number: int, opened_with: bytes) -> dict:
        """The round state round ``number`` starts from: the carried one when it extends to this round and the chain
        opened the round with the model it carries, else replayed."""
        from fedledger.audit_verify import carries_state

        if number == 1 or not carries_state(self.rules):
            return {}
        carried = self.carried
        if carried is not None and carried.round == number and carried.model_hash == opened_with:
            log.info("round %d: round state carried from round %d", number, number - 1)
            return carried.state
        if carried is not None:
            log.warning("round %d: the carried round state does not extend to it (carried into round %d, model "
                        "0x%s; the chain opened it with 0x%s): replaying", number, carried.round,
                        carried.model_hash.hex(), opened_with.hex())
        return self.replay(number) if self.replay is not None else {}

    def _carry(self, number: int, status: str, finalized_model: bytes | None = None) -> None:
        """After settling round ``number``: carry the round state into the next round (``agreed``: the state after
        this scorer's computation, with the model the chain finalized; ``lapsed``: the state and model before), or
        nothing (``dissented``: the chain's round state is not this scorer's, so the next round replays)."""
        before, after = self._computed.pop(number, (None, None))
        if status == "lapsed" and before is None and self.carried is not None and self.carried.round == number:
            before = self.carried  # lapsed before this scorer computed it: nothing changes
        if status == "agreed" and after is not None and finalized_model is not None:
            self.carried = CarriedState(number + 1, finalized_model, after)
        elif status == "lapsed" and before is not None:
            self.carried = CarriedState(number + 1, before.model_hash, before.state)
        else:
            self.carried = None

    def lapsed(self, number: int) -> RoundResult:
        """Round ``number`` lapsed before this scorer computed it."""
        self._carry(number, "lapsed")
        return RoundResult(number, "lapsed")

    def sign(self, result: RoundResult) -> bytes:
        from fedcore.attestations import sign_outcome

        return sign_outcome(self.account, chain_id=int(self.client.w3.eth.chain_id), contract=self.client.address,
                            bounty_id=self.bounty_id, round_=result.round,
                            new_model_hash=result.model_hash,
                            participants=result.participants, scores=result.scores)

    def attest(self, result: RoundResult) -> None:
        """Sign ``result`` and hand it to the aggregator."""
        signature = self.sign(result)
        self.source.post_attestation(result.round, {
            "scorer": self.account.address, "signature": "0x" + signature.hex(),
            "outcome": {"new_model_hash": result.new_model_hash, "participants": result.participants,
                        "scores": [str(s) for s in result.scores]}})
        result.status = "attested"
        result.outcome_digest = "0x" + self.client.outcome_digest(
            self.bounty_id, result.round, result.model_hash, result.participants,
            result.scores).hex()
        log.info("round %d: attested model %s with %d participant(s)", result.round, result.new_model_hash,
                 len(result.participants))

    def settle(self, result: RoundResult) -> RoundResult:
        """Once the round is over on chain: agree, or record a dissent from the finalized outcome, or note it lapsed."""
        from ledger.client import tx_hash_hex

        number = result.round
        if self.client.event_tx("RoundLapsed", self.bounty_id, number) is not None:
            result.status = "lapsed"
            self._carry(number, result.status)
            return result
        finalized = self.client.round(self.bounty_id, number)
        result.finalized_model_hash = "0x" + bytes(finalized.new_model_hash).hex()
        scored = {log_["args"]["institution"]: int(log_["args"]["score"])
                  for log_ in self.client.logs("ContributionScored", {"bountyId": self.bounty_id})
                  if int(log_["args"]["round"]) == number and int(log_["args"]["bountyId"]) == self.bounty_id}
        ours = dict(zip(result.participants, result.scores, strict=True))
        if result.finalized_model_hash == result.new_model_hash and scored == ours:
            result.status = "agreed"
            self._carry(number, result.status, bytes(finalized.new_model_hash))
            return result
        digest = self.client.outcome_digest(self.bounty_id, number, result.model_hash, result.participants,
                                            result.scores)
        result.outcome_digest = "0x" + bytes(digest).hex()
        receipt = self.client.record_dissent(self.bounty_id, number, digest)
        result.dissent_tx = tx_hash_hex(receipt["transactionHash"])
        result.status = "dissented"
        self._carry(number, result.status)
        log.warning("round %d: finalized with another outcome; dissent recorded (tx %s)", number, result.dissent_tx)
        return result


def not_served(commitments: Mapping[str, Any], uploads: Mapping[str, str], selected: Collection[str],
               refusals: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Invited institutions with a commitment on chain whose upload the aggregator does not serve (pure), split in
    ``(unserved, refused)``: ``refused`` maps those the aggregator gives a reason for (``refusals``: institution ->
    its recorded refusal) to that reason; ``unserved`` the others, left out without a word, to what that means."""
    invited = set(selected)
    missing = [who for who in sorted(commitments) if who in invited and who not in uploads]
    unserved = {who: "committed on chain but the aggregator serves no upload of it and gives no reason (never "
                     "uploaded, or dropped by the aggregator)" for who in missing if who not in refusals}
    return unserved, {who: refusals[who] for who in missing if who in refusals}


def check_inputs(bounty, *, task: Path, validation: Path, rules: Path) -> None:
    """Refuse to score with a task, validation set or rules other than the ones the bounty fixed on chain."""
    from fedcore.rules import RoundRules, rules_hash
    from fedcore.task import TaskSpec, task_hash

    checks = (("--task", task_hash(TaskSpec.load(task)), bounty.task_spec_hash),
              ("--validation", bytes(Digest.of(Path(validation).read_bytes())), bounty.validation_set_hash),
              ("--rules", rules_hash(RoundRules.load(rules)), bounty.rules_hash))
    for option, given, fixed in checks:
        if bytes(given) != bytes(fixed):
            raise ConfigError(f"{option} hashes to 0x{bytes(given).hex()}, bounty {bounty.id} fixed "
                              f"0x{bytes(fixed).hex()}")


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AggregatorError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# CLI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from fedcore.output import add_format_option
    from ledger.cli import add_deployment_option, add_rpc_option

    group = subparsers.add_parser(
        "scorer", help="score a bounty's rounds as a member of its scoring committee",
        description="A scoring committee member's commands: recompute each round from the committed updates and the "
                    "validation set, attest the outcome, and record a dissent when the round is finalized otherwise.")
    sub = group.add_subparsers(dest="scorer_command", metavar="ACTION", required=True)
    for name, text in (("attest", "score one round once its commit window closed, attest it, settle it"),
                       ("serve", "score every round of the bounty until it is over")):
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("--bounty", type=int, required=True, metavar="ID")
        if name == "attest":
            cmd.add_argument("--round", type=int, required=True, metavar="R")
        cmd.add_argument("--aggregator", required=True, metavar="URL", help="the aggregator's HTTP API")
        cmd.add_argument("--task", required=True, metavar="FILE", help="task spec JSON (checked against the chain)")
        cmd.add_argument("--validation", required=True, metavar="CSV",
                         help="this scorer's copy of the validation set (its sha256 is checked against the chain)")
        cmd.add_argument("--rules", required=True, metavar="FILE", help="the bounty's round rules JSON (checked)")
        cmd.add_argument("--keystore", default=None, metavar="PATH",
                         help="this scorer's encrypted keystore (default: $FEDLEDGER_KEYSTORE)")
        cmd.add_argument("--password-file", default=None, metavar="FILE",
                         help="keystore password file (else $FEDLEDGER_PASSWORD, else a prompt)")
        add_rpc_option(cmd)
        add_deployment_option(cmd)
        cmd.add_argument("--db", default=None, metavar="PATH",
                         help="event index for replaying earlier rounds (default: <deployment>.index.sqlite)")
        cmd.add_argument("--poll-interval", type=float, default=1.0, metavar="SECONDS")
        cmd.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                         help="give up waiting for a round to close or be settled after this long (default 3600)")
        add_format_option(cmd)
        cmd.set_defaults(func=_attest if name == "attest" else _serve)


def _scorer(args: argparse.Namespace) -> Scorer:
    import os

    from fedcore.keystore import unlock
    from fedcore.population import load_validation_set
    from fedcore.rules import RoundRules
    from fedcore.task import TaskSpec
    from ledger.chain import connect
    from ledger.client import FedLedgerClient
    from ledger.deployment import Deployment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    deployment = Deployment.load(args.deployment)
    w3 = connect(args.rpc)
    account = unlock(args.keystore, password_file=args.password_file)
    client = FedLedgerClient.from_deployment(w3, deployment, sender=account)
    bounty = client.bounty(args.bounty)
    check_inputs(bounty, task=args.task, validation=args.validation, rules=args.rules)
    spec, rules = TaskSpec.load(args.task), RoundRules.load(args.rules)
    validation = load_validation_set(args.validation, spec)
    source = CommitteeAggregator(args.aggregator, account, chain_id=int(w3.eth.chain_id), contract=client.address,
                                 bounty_id=args.bounty)
    tamper = None
    if os.environ.get(TAMPER_ENV):  # TEST-ONLY (tests/e2e): a dishonest scorer, see TAMPER_ENV
        def tamper(fixed: dict[str, int]) -> dict[str, int]:
            return {who: score + 1 for who, score in fixed.items()}

    from ledger.audit import default_index_path

    db = args.db or default_index_path(args.deployment)

    def replay(number: int) -> dict:
        return replayed_state(client, deployment, db, source, args.bounty, spec=spec, rules=rules,
                              validation=validation)

    return Scorer(client, account, source, args.bounty, spec, rules, validation, replay=replay, tamper=tamper)


def replayed_state(client, deployment, db, source: HttpAggregator, bounty_id: int, *, spec, rules, validation) -> dict:
    """The round state after the bounty's finalized rounds, replayed as the auditor replays them
    (:func:`fedledger.audit_verify.replay_rounds`, from the chain's events and the served updates); a lapsed round
    changes nothing."""
    from fedledger.audit_verify import commitment_binding, replay_rounds, store_checks
    from ledger.audit import sync_index, trace

    sync_index(client.w3, deployment, db)
    report = trace(db, bounty_id, client)
    binding = commitment_binding(client, bounty_id)
    _, records, payloads = store_checks(report, source, bounty_id, binding)
    carried: dict = {}
    replay_rounds(report, source, bounty_id, records, payloads, spec=spec, rules=rules, validation=validation,
                  binding=binding, carried=carried)
    return carried


#: TEST-ONLY (tests/e2e): FEDLEDGER_SCORER_TAMPER=1 makes the scorer attest scores one unit above what it computed,
#: so a test can show a dishonest scorer outvoted and its dissent on chain. Nothing sets it in normal use.
TAMPER_ENV = "FEDLEDGER_SCORER_TAMPER"


def _round_closed_on_chain(scorer: Scorer, number: int) -> bool:
    return bool(scorer.client.round(scorer.bounty_id, number).finalized)


def _score_round(scorer: Scorer, number: int, args: argparse.Namespace) -> RoundResult:
    """Wait for the round's window to close, compute, attest (if the round is still open), wait for it to be over on
    chain, settle."""
    from ledger.chain import latest_timestamp

    client = scorer.client
    chain_round = client.round(scorer.bounty_id, number)
    if chain_round.opened_at == 0:
        raise ConfigError(f"round {number} of bounty {scorer.bounty_id} has not been opened")
    if chain_round.finalized and client.event_tx("RoundLapsed", scorer.bounty_id, number) is not None:
        return scorer.lapsed(number)
    # an idle dev chain mines no block, so its time stands still: the later of its time and this machine's clock
    wait_for(lambda: max(latest_timestamp(client.w3), int(time.time())) > chain_round.commit_deadline
             or _round_closed_on_chain(scorer, number),
             timeout=args.timeout, interval=args.poll_interval, what=f"round {number}'s commit window to close")

    def computed() -> tuple[RoundResult, Any] | None:
        try:
            return scorer.compute(number)
        except NotServed as error:  # e.g. the aggregator still takes uploads (grace period): try again
            log.info("round %d: not ready yet (%s)", number, error)
            return None

    result, _ = wait_for(computed, timeout=args.timeout, interval=args.poll_interval,
                         what=f"round {number}'s updates from the aggregator")
    if not _round_closed_on_chain(scorer, number):
        try:
            scorer.attest(result)
        except NotServed as error:  # e.g. finalized or lapsed meanwhile: settling tells
            log.warning("round %d: attestation not taken: %s", number, error)
    wait_for(lambda: _round_closed_on_chain(scorer, number), timeout=args.timeout, interval=args.poll_interval,
             what=f"round {number} to be finalized or lapse")
    return scorer.settle(result)


def _attest(args: argparse.Namespace) -> int:
    from fedcore.output import emit

    scorer = _scorer(args)
    result = _score_round(scorer, args.round, args)
    emit(result.to_dict(), args.format, text=_text)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import json

    scorer = _scorer(args)

    def emit(result: RoundResult) -> None:
        print(json.dumps(result.to_dict()) if args.format == "json" else _text(result.to_dict()), flush=True)

    serve_rounds(scorer, lambda number: _score_round(scorer, number, args), emit, poll_interval=args.poll_interval)
    return 0


def serve_rounds(scorer: Scorer, score_round: Callable[[int], RoundResult], emit: Callable[[RoundResult], None], *,
                 poll_interval: float) -> None:
    """Score each round of the bounty in turn as it opens (``score_round``, with one :class:`Scorer`, which carries
    the round state from one round to the next), until the bounty is over."""
    from ledger.client import BountyStatus

    client = scorer.client
    number = 1
    while True:
        bounty = client.bounty(scorer.bounty_id)
        if number > bounty.num_rounds or bounty.status == BountyStatus.CANCELLED:
            break
        if bounty.rounds_opened < number:
            if bounty.status != BountyStatus.ACTIVE or client.w3.eth.get_block("latest")["timestamp"] > bounty.deadline:
                break
            time.sleep(poll_interval)
            continue
        emit(score_round(number))
        number += 1


def _text(report: dict) -> str:
    line = f"round {report['round']}: {report['status']}"
    if report.get("new_model_hash"):
        line += f", model {report['new_model_hash'][:12]}…, {len(report['participants'])} participant(s)"
    if report.get("dissent_tx"):
        line += f", dissent tx {report['dissent_tx']}"
    if report.get("refused"):
        line += f", committed but refused by the aggregator: {', '.join(report['refused'])}"
    if report.get("unserved"):
        line += f", committed but not served by the aggregator, no reason given: {', '.join(report['unserved'])}"
    return line
