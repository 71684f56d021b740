"""``fedledger audit verify``: check a bounty's whole record, trusting neither the aggregator nor the sponsor.

From the chain's events alone (the event index of :mod:`ledger.audit`), and the contract's views:

``commitments``
    every institution scored in a finalized round committed in that round, and the contract's
    ``commitmentOf`` holds the hash its ``UpdateCommitted`` event announced;
``unique_participants``
    no institution scored twice in a round, no update hash shared by two scored institutions of a round,
    and each ``RoundFinalized`` counts exactly the participants scored;
``model_chain``
    each round opened with the global model the previous round finalized;
``money_invariant``
    funded = credited + refunded + escrowed, with funded/credited/refunded summed from events equal to the
    contract's counters and escrowed read from ``escrowOf``; per round the credits sum to the round's
    ``credited`` and never exceed its ``reward``;
``claims_within_credits``
    per institution, claimed <= credited, and the contract's unclaimed balance = credited - claimed.

With ``--aggregator URL`` (the aggregator's HTTP API; see *What the aggregator must serve* below):

``round_records``
    for each finalized round the aggregator's record lists exactly the chain's scored participants, with
    update hashes that, bound to them (:func:`fedcore.commitments.bind_commitment`), are their on-chain
    commitments, and the chain's new model hash;
``updates_match_commitments``
    every update the chain scored, downloaded by the hash the record gives, hashes (sha256 of the exact bytes)
    to that hash, and that hash bound to its sender is the sender's on-chain commitment.

With ``--recompute`` (needs ``--aggregator``, ``--task``, ``--validation`` and ``--rules``):

``rules_hash`` / ``task_spec_hash`` / ``validation_set_hash``
    the given round rules, task spec and validation CSV are the ones fixed on chain when the bounty was created
    (checked first: nothing is recomputed with other rules);
``global_model_round_<r>``
    the model round r opened with, downloaded, hashes to the chain's ``globalModelHash``;
``aggregate_round_<r>``
    re-running the bounty's strategy on the downloaded updates gives a model whose canonical bytes hash to
    the chain's ``newModelHash``, bit for bit;
``scores_round_<r>``
    re-running :func:`aggregator.rounds.compute_round` with exactly the bounty's rules (their estimator,
    parameters and the round's seed) gives exactly the on-chain fixed-point scores.

Report (``--format json``)::

    {"bounty_id": int, "verified": bool,
     "checks": [{"name": str, "ok": bool, "detail": str}, ...],
     "reasons": [str, ...],     # "<name>: <detail>" of every failed check
     "skipped": [str, ...]}     # checks not run, and why (e.g. no --aggregator)

``verified`` is true when every check that ran passed. Exit code 0 when verified, 1 when not (the report is
printed either way), 2 for a usage error (unknown bounty, no chain, unreachable aggregator...).

What the aggregator must serve
------------------------------
The aggregator service's API (``fedcore.protocol.RoundReport``, which parses it); the audit reads only these fields:

``GET {URL}/bounties/{id}/rounds/{r}`` -> JSON::

    {"global_model_hash": "0x<64 hex>",          # sha256 of the model bytes the round opened with
     "new_model_hash": "0x<64 hex>" | null,      # null until scored
     "used": [                                   # the updates that entered aggregation and scoring
         {"institution": "0x<checksum address>", "sha256": "0x<64 hex>", "num_samples": 100}, ...] | null,
     "excluded": {"0x<address>": "why its commitment was not used"} | null,
     "settings": {"strategy": "fedavg", "strategy_params": {...},
                  "scorer": "gtg", "scorer_params": {...}, "seed": 123, ...},
     "scores": {"fixed_point": {"0x<address>": "<decimal string>"}, ...} | null,
     ...}

``GET {URL}/bounties/{id}/rounds/{r}/updates/{sha256}`` -> the update's safetensors bytes;
``GET {URL}/bounties/{id}/models/{sha256}`` -> a model's safetensors bytes. ``sha256`` is sent as 64 lowercase hex
characters without ``0x``; hashes in the JSON may carry ``0x`` or not.

The strategy's server-optimizer state (FedAdam, FedYogi, FedAdagrad) is not downloaded: the recomputation replays
the rounds in order from the rules' strategy, carrying the state itself, through the same
:func:`aggregator.rounds.compute_round` the aggregator runs; the sample counts are the chain's commitments.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from fedcore.errors import AggregatorError, ConfigError, FedLedgerError
from fedcore.protocol import ErrorBody, RoundReport
from fedcore.types import Digest
from ledger.trace import BountyTrace, RoundTrace

EXIT_NOT_VERIFIED = 1
#: ``(round, institution, update sha256) -> the commitment that institution makes for it`` (:func:`commitment_binding`)
Binding = Callable[[int, str, Digest], Digest]
RECOMPUTE_NEEDS = "--recompute needs --aggregator URL, --task task.json, --validation val.csv and --rules rules.json"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class AggregatorSource(Protocol):
    """Where the auditor gets what the aggregator stored (the HTTP API, or a stand-in in tests)."""

    def round_record(self, bounty_id: int, round_: int) -> dict: ...

    def update(self, bounty_id: int, round_: int, sha256_hex: str) -> bytes: ...

    def model(self, bounty_id: int, sha256_hex: str) -> bytes: ...


class NotServed(Exception):
    """The aggregator answered, but not with the item (404, 5xx, not JSON...): a failed check, not a usage error."""


class HttpAggregator:
    """The aggregator's HTTP API (``GET`` only).

    Raises AggregatorError when nothing answers at ``url`` (a usage error), NotServed for a missing item.
    """

    def __init__(self, url: str, *, timeout: float = 30.0, client: Any = None):
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--aggregator {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self._client = client or httpx.Client(base_url=self.url, timeout=timeout)

    def _get(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        import httpx

        try:
            response = self._client.get(path, headers=dict(headers or {}))
        except httpx.TransportError as error:
            raise AggregatorError(f"no aggregator answers at {self.url} ({type(error).__name__})") from None
        if response.status_code != 200:
            try:
                body = ErrorBody.model_validate_json(response.content)
                detail = f"{body.code}: {body.detail}"
            except ValidationError:
                detail = response.text
            raise NotServed(f"GET {path} answered {response.status_code} {' '.join(detail.split())[:200]}".rstrip())
        return response

    def round_record(self, bounty_id: int, round_: int) -> dict:
        response = self._get(f"/bounties/{bounty_id}/rounds/{round_}")
        try:
            record = response.json()
        except ValueError:
            raise NotServed(f"the record of round {round_} is not JSON") from None
        if not isinstance(record, dict):
            raise NotServed(f"the record of round {round_} is not a JSON object")
        return record

    def update(self, bounty_id: int, round_: int, sha256_hex: str) -> bytes:
        return self._get(f"/bounties/{bounty_id}/rounds/{round_}/updates/{Digest(sha256_hex).bare}").content

    def model(self, bounty_id: int, sha256_hex: str) -> bytes:
        return self._get(f"/bounties/{bounty_id}/models/{Digest(sha256_hex).bare}").content


# ---------------------------------------------------------------------------------------------
# Small helpers


def _short(digest: Digest | str | None) -> str:
    return (str(digest)[:10] + "…") if digest else str(digest)


def _addr(value: Any) -> str | None:
    from web3 import Web3

    return Web3.to_checksum_address(value) if isinstance(value, str) and Web3.is_address(value) else None


def parse_round_record(raw: Mapping[str, Any], round_: int) -> RoundReport:
    """The JSON of ``GET /bounties/{id}/rounds/{r}`` as the protocol's :class:`~fedcore.protocol.RoundReport`
    (addresses checksummed, hashes 0x-hex), checked for what the audit needs.

    Raises
    ------
    NotServed
        When the record is malformed, of another round, not scored yet, or uses an institution twice (reported as a
        failed check).
    """
    try:
        record = RoundReport.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise NotServed(f"round {round_} record is malformed: {where}: {first['msg']}"[:300]) from None
    if record.round != round_:
        raise NotServed(f"the record served for round {round_} is of round {record.round}")
    if record.used is None:
        raise NotServed(f"round {round_} record has no 'used' list (not scored yet?)")
    twice = sorted(who for who, n in Counter(u.institution for u in record.used).items() if n > 1)
    if twice:
        raise NotServed(f"round {round_} record uses {', '.join(twice)} twice")
    return record


# ---------------------------------------------------------------------------------------------
# The checks on chain data


def chain_checks(report: BountyTrace, client, bounty_id: int) -> list[Check]:
    """The checks that need only the chain (``report`` is :func:`ledger.audit.trace`'s output)."""
    checks = []
    finalized = report.finalized_rounds

    # commitments
    problems = []
    for r in (r for r in report.rounds if r.scored):
        times = Counter(c.institution for c in r.commitments)
        committed = r.committed
        if not r.is_finalized:
            problems.append(f"round {r.number} has scores but no RoundFinalized")
        for who in (s.institution for s in r.scored):
            if who not in committed:
                problems.append(f"round {r.number}: {who} was scored without a commitment")
                continue
            if times[who] != 1:
                problems.append(f"round {r.number}: {who} committed {times[who]} times")
            on_chain = Digest(client.commitment_of(bounty_id, r.number, who))
            if on_chain != committed[who].update_hash:
                problems.append(f"round {r.number}: {who}'s commitment is {_short(on_chain)} on chain, "
                                f"{_short(committed[who].update_hash)} in its event")
    n_scored = sum(len(r.scored) for r in report.rounds)
    checks.append(Check("commitments", not problems, "; ".join(problems) or
                        f"all {n_scored} scored updates in {len(finalized)} finalized rounds "
                        "were committed in their round"))

    # unique participants and hashes
    problems = []
    for r in report.rounds:
        twice = [who for who, n in Counter(s.institution for s in r.scored).items() if n > 1]
        if twice:
            problems.append(f"round {r.number}: scored twice: {', '.join(twice)}")
        copies = [h for h, n in Counter(c.update_hash for c in r.used.values()).items() if n > 1]
        if copies:
            problems.append(f"round {r.number}: update hash used by several participants: "
                            f"{', '.join(map(_short, copies))}")
    for r in finalized:
        if r.participants != len(r.scored):
            problems.append(f"round {r.number}: RoundFinalized counts {r.participants} participants, "
                            f"{len(r.scored)} were scored")
    checks.append(Check("unique_participants", not problems, "; ".join(problems) or
                        "no participant scored twice and no update hash shared within a round"))

    # model chain
    problems = []
    by_number = {r.number: r for r in report.rounds}
    for r in report.rounds:
        previous = by_number.get(r.number - 1)
        if previous is None:
            continue
        # a lapsed round (no quorum) ends with the model it started from
        handed_on = previous.global_model_hash if previous.lapsed is not None else previous.new_model_hash
        if handed_on != r.global_model_hash:
            problems.append(f"round {r.number} opened with {_short(r.global_model_hash)}, round {previous.number} "
                            f"{'lapsed' if previous.lapsed is not None else 'finalized'} {_short(handed_on)}")
    checks.append(Check("model_chain", not problems, "; ".join(problems) or
                        f"each of {len(report.rounds)} rounds opened with the previous round's new model "
                        "(a lapsed round's own)"))

    # money
    books, on_chain = report.books, client.bounty(bounty_id)
    escrow = client.escrow_of(bounty_id)
    problems = []
    if books.funded != books.credited + books.refunded + escrow:
        problems.append(f"funded {books.funded} != credited {books.credited} + refunded {books.refunded} "
                        f"+ escrowed {escrow}")
    for key in ("funded", "credited", "refunded"):
        if getattr(books, key) != getattr(on_chain, key):
            problems.append(f"{key}: {getattr(books, key)} from events, {getattr(on_chain, key)} in the contract")
    if on_chain.escrowed != escrow:
        problems.append(f"the contract's counters give escrowed {on_chain.escrowed}, escrowOf {escrow}")
    for r in finalized:
        credits = sum(r.credits.values())
        if credits != r.credited:
            problems.append(f"round {r.number}: credits sum to {credits}, RoundFinalized says {r.credited}")
        if (r.credited or 0) > (r.reward or 0):  # both set: the round is finalized
            problems.append(f"round {r.number}: credited {r.credited} > reward {r.reward}")
    checks.append(Check("money_invariant", not problems, "; ".join(problems) or
                        f"funded {books.funded} = credited {books.credited} + refunded {books.refunded} "
                        f"+ escrowed {escrow}, matching the contract"))

    # claims
    problems = []
    for who, info in sorted(report.institutions.items()):
        if info.claimed > info.credited:
            problems.append(f"{who} claimed {info.claimed} > credited {info.credited}")
        unclaimed, _ = client.contribution_of(bounty_id, who)
        if unclaimed != info.unclaimed:
            problems.append(f"{who}: contract holds {unclaimed} unclaimed, events give {info.unclaimed}")
    checks.append(Check("claims_within_credits", not problems, "; ".join(problems) or
                        f"{len(report.institutions)} institutions: claimed <= credited, unclaimed balances agree"))
    return checks


# ---------------------------------------------------------------------------------------------
# The checks against the aggregator's store


def _record_problems(r: RoundTrace, record: RoundReport, binding: Binding) -> list[str]:
    """How a round record disagrees with the chain (empty when it agrees); ``binding(round, who, sha)`` is the
    commitment ``who`` makes for the update hashing to ``sha``."""
    number, used = r.number, r.used
    hashes = {who: c.update_hash for who, c in used.items()}
    record_problems: list[str] = []
    recorded = record.used or []
    kept = {u.institution: u.sha256 for u in recorded}
    counts = {u.institution: u.num_samples for u in recorded}
    if set(kept) != set(hashes):
        missing, extra = sorted(set(hashes) - set(kept)), sorted(set(kept) - set(hashes))
        record_problems.append(f"round {number}: the record's updates differ from the chain's scored participants"
                               + (f"; not in the record: {', '.join(missing)}" if missing else "")
                               + (f"; not scored on chain: {', '.join(extra)}" if extra else ""))
    for who in sorted(set(kept) & set(hashes)):
        if binding(number, who, Digest(kept[who])) != hashes[who]:
            record_problems.append(f"round {number}: the record gives {who} update {_short(kept[who])}, which does "
                                   f"not bind to its commitment {_short(hashes[who])}")
        if counts[who] != used[who].sample_count:
            record_problems.append(f"round {number}: the record gives {who} {counts[who]} samples, "
                                   f"the chain {used[who].sample_count}")
    if record.new_model_hash != str(r.new_model_hash):
        record_problems.append(f"round {number}: the record's new model {_short(record.new_model_hash)} is not the "
                               f"chain's {_short(r.new_model_hash)}")
    if record.global_model_hash is not None and record.global_model_hash != str(r.global_model_hash):
        record_problems.append(f"round {number}: the record's global model {_short(record.global_model_hash)} is "
                               f"not the chain's {_short(r.global_model_hash)}")
    if record.scores is not None and record.fixed_point_scores() != r.scores:
        record_problems.append(f"round {number}: the record's scores differ from the chain's")
    unexplained = sorted(set(r.committed) - set(hashes) - set(record.excluded or {}))
    if unexplained:
        record_problems.append(f"round {number}: committed, not used, and no reason given: {', '.join(unexplained)}")
    return record_problems


def commitment_binding(client, bounty_id: int) -> Binding:
    """``(round, institution, update sha256) -> commitment`` that institution makes on this chain and contract
    (:func:`fedcore.commitments.bind_commitment`)."""
    from fedcore.commitments import bind_commitment

    chain_id, contract = int(client.w3.eth.chain_id), client.address

    def binding(round_: int, institution: str, sha: Digest) -> Digest:
        return Digest(bind_commitment(chain_id=chain_id, contract=contract, bounty_id=bounty_id, round_=round_,
                                      institution=institution, update_sha256=bytes(sha)))
    return binding


def store_checks(report: BountyTrace, source: AggregatorSource, bounty_id: int, binding: Binding
                 ) -> tuple[list[Check], dict[int, RoundReport], dict[int, dict[str, bytes]]]:
    """``round_records`` and ``updates_match_commitments``; returns the parsed records and the verified update bytes
    (``binding``: :func:`commitment_binding`)."""
    records: dict[int, RoundReport] = {}
    payloads: dict[int, dict[str, bytes]] = {}
    record_problems, update_problems = [], []
    n_updates = 0
    finalized = report.finalized_rounds
    for r in finalized:
        number = r.number
        try:
            record = parse_round_record(source.round_record(bounty_id, number), number)
        except NotServed as error:
            record_problems.append(f"round {number}: {error}")
            record = None
        if record is not None:
            records[number] = record
            record_problems += _record_problems(r, record, binding)
        payloads[number] = {}
        shas = {u.institution: u.sha256 for u in record.used or []} if record is not None else {}
        for who, commitment in sorted(r.used.items()):  # what the chain says was used: each must be served and bind
            n_updates += 1
            committed = commitment.update_hash
            if who not in shas:
                update_problems.append(f"round {number}: no update of {who} is recorded")
                continue
            try:
                data = source.update(bounty_id, number, shas[who])
            except NotServed as error:
                update_problems.append(f"round {number}: {who}'s update {_short(shas[who])} not served ({error})")
                continue
            if binding(number, who, Digest.of(data)) != committed:
                update_problems.append(f"round {number}: {who}'s stored update hashes to {_short(Digest.of(data))}, "
                                       f"which does not bind to its commitment {_short(committed)}")
                continue
            payloads[number][who] = data
    checks = [
        Check("round_records", not record_problems, "; ".join(record_problems) or
              f"{len(finalized)} round records agree with the chain"),
        Check("updates_match_commitments", not update_problems, "; ".join(update_problems) or
              f"{n_updates} stored updates hash to their commitments"),
    ]
    return checks, records, payloads


# ---------------------------------------------------------------------------------------------
# Recomputation


def recompute_checks(report: BountyTrace, source: AggregatorSource, bounty_id: int, records: dict[int, RoundReport],
                     payloads: dict[int, dict[str, bytes]], *, task: str | Path, validation: str | Path,
                     rules: str | Path, binding: Binding | None = None) -> list[Check]:
    """The round rules', task's and validation set's hashes first, then per finalized round (in order) the global
    model, the aggregate and the scores, recomputed with exactly the rules the bounty fixed."""
    from fedcore.rules import RoundRules, rules_hash_hex
    from fedcore.task import TaskSpec, task_hash_hex

    created = report.created
    the_rules = RoundRules.load(rules)
    given = Digest(rules_hash_hex(the_rules))
    checks = [Check("rules_hash", given == created.rules_hash,
                    f"{Path(rules).name} hashes to {_short(given)}, the chain has {_short(created.rules_hash)}")]
    spec = TaskSpec.load(task)
    given = Digest(task_hash_hex(spec))
    checks.append(Check("task_spec_hash", given == created.task_spec_hash,
                        f"{Path(task).name} hashes to {_short(given)}, the chain has {_short(created.task_spec_hash)}"))
    try:
        validation_bytes = Path(validation).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read validation set {validation}: {error.strerror}") from None
    given = Digest.of(validation_bytes)
    checks.append(Check("validation_set_hash", given == created.validation_set_hash,
                        f"{Path(validation).name} hashes to {_short(given)}, the chain has "
                        f"{_short(created.validation_set_hash)}"))
    if not all(c.ok for c in checks):
        checks.append(Check("recompute", False,
                            "not recomputed: the round rules, task spec or validation set are not the bounty's"))
        return checks
    from fedcore.population import load_validation_set

    checks += replay_rounds(report, source, bounty_id, records, payloads, spec=spec, rules=the_rules,
                            validation=load_validation_set(validation, spec), binding=binding)
    return checks


def replay_rounds(report: BountyTrace, source: AggregatorSource, bounty_id: int, records: dict[int, RoundReport],
                  payloads: dict[int, dict[str, bytes]], *, spec, rules, validation,
                  binding: Binding | None = None, carried: dict | None = None) -> list[Check]:
    """Re-run every finalized round through :func:`aggregator.rounds.compute_round`, in order; one check per round
    and step. The strategy's state is carried from round to round as the aggregator carries it; once a round
    cannot be replayed, later rounds of a stateful strategy are not recomputed. With ``binding``
    (:func:`commitment_binding`), the updates the round computation left out (outside the task's bounds, or not
    computable) are replayed too, and ``exclusions_round_<r>`` checks it leaves out the same ones for the same
    reasons. ``carried``, when given, is filled with the round state after the last replayed round (a scorer
    starts the next round from it)."""
    from aggregator.rounds import RoundInputs, compute_round
    from fedcore.codec import decode, describe
    from fedcore.types import Update

    stateful = carries_state(rules)
    checks: list[Check] = []
    state: dict = {}
    state_lost = False
    for r in report.finalized_rounds:
        number, used, chain_scores = r.number, r.used, r.scores
        if state_lost and stateful:
            checks.append(Check(f"aggregate_round_{number}", False,
                                f"not recomputed: the round state ({rules.strategy}'s and the contribution gate's) "
                                "carries across rounds and an earlier round could not be replayed"))
            continue
        if records.get(number) is None or set(payloads.get(number, {})) != set(used):
            checks.append(Check(f"aggregate_round_{number}", False,
                                "not recomputed: the round record or some of its updates are missing or wrong"))
            state_lost = True
            continue
        try:
            model_bytes = source.model(bounty_id, str(r.global_model_hash))
        except NotServed as error:
            checks.append(Check(f"global_model_round_{number}", False, f"not served: {error}"))
            state_lost = True
            continue
        got = Digest.of(model_bytes)
        checks.append(Check(f"global_model_round_{number}", got == r.global_model_hash,
                            f"the served model hashes to {_short(got)}, the chain has {_short(r.global_model_hash)}"))
        if got != r.global_model_hash:
            state_lost = True
            continue
        ids = sorted(used)
        left_out = _left_out_by_the_round(report, records[number], number, binding) if binding else {}
        try:
            global_weights = decode(model_bytes)
            updates = tuple(Update(who, decode(payloads[number][who], describe(global_weights)),
                                   used[who].sample_count)
                            for who in ids)
            updates += tuple(Update(who, decode(_fetch(source, bounty_id, number, sha), describe(global_weights)), n)
                             for who, (sha, n) in sorted(left_out.items()))
            outcome = compute_round(RoundInputs(round=number, global_weights=global_weights, updates=updates,
                                                strategy_state=state, X_val=validation.X, y_val=validation.y,
                                                groups_val=validation.groups), rules, spec)
        except (FedLedgerError, NotServed) as error:
            checks.append(Check(f"aggregate_round_{number}", False, f"cannot replay: {error}"))
            state_lost = True
            continue
        if left_out:
            differ = sorted(w for w in set(left_out) | set(outcome.rejected)
                            if outcome.rejected.get(w) != (records[number].excluded or {}).get(w))
            checks.append(Check(f"exclusions_round_{number}", not differ, "; ".join(
                f"{w}: recomputed {outcome.rejected.get(w)!r}, recorded {(records[number].excluded or {}).get(w)!r}"
                for w in differ) or f"the round computation leaves out the same {len(left_out)} update(s) for the "
                "same reasons"))
        recorded_out = (records[number].aggregate or {}).get("excluded_by_strategy")
        if recorded_out is not None:  # what the strategy and the contribution gate kept out of the aggregate
            differ = sorted(w for w in set(recorded_out) | set(outcome.excluded)
                            if outcome.excluded.get(w) != recorded_out.get(w))
            checks.append(Check(f"left_out_round_{number}", not differ, "; ".join(
                f"{w}: recomputed {outcome.excluded.get(w)!r}, recorded {recorded_out.get(w)!r}" for w in differ)
                or f"the aggregate leaves out the same {len(recorded_out)} scored update(s) for the same reasons"))
        state = outcome.strategy_state
        if carried is not None:
            carried.clear()
            carried.update(state)
        new_hash = outcome.model_hash
        checks.append(Check(f"aggregate_round_{number}", new_hash == r.new_model_hash,
                            f"{rules.strategy} over {len(ids)} updates gives {_short(new_hash)}, "
                            f"the chain has {_short(r.new_model_hash)}"))
        recomputed = {_addr(k) or k: int(v) for k, v in outcome.fixed_point.items()}
        differ = sorted(w for w in set(recomputed) | set(chain_scores) if recomputed.get(w) != chain_scores.get(w))
        detail = (f"{rules.estimator} (seed {rules.round_seed(number)}, "
                  f"{outcome.scores.evaluations if outcome.scores else 0} evaluations) reproduces the "
                  f"{len(chain_scores)} on-chain scores exactly") if not differ else "; ".join(
            f"{w}: recomputed {recomputed.get(w)}, on chain {chain_scores.get(w)}" for w in differ)
        checks.append(Check(f"scores_round_{number}", not differ, detail))
    return checks


def carries_state(rules) -> bool:
    """Whether a round depends on the rounds before it: a stateful server optimizer, or the contribution gate's
    record (it travels in the round state too)."""
    from aggregator.rules import strategy_from_rules
    from aggregator.strategies import Strategy

    return type(strategy_from_rules(rules)).state_dict is not Strategy.state_dict or (
        rules.exclude_harmful and rules.gate_after > 0)


def _fetch(source: AggregatorSource, bounty_id: int, number: int, sha: str) -> bytes:
    """An update's bytes, checked against the hash they were asked by; NotServed otherwise."""
    data = source.update(bounty_id, number, sha)
    if Digest.of(data) != Digest(sha):
        raise NotServed(f"round {number}: the update served for {_short(sha)} hashes to {_short(Digest.of(data))}")
    return data


def _left_out_by_the_round(report: BountyTrace, record: RoundReport, number: int, binding: Binding
                           ) -> dict[str, tuple[str, int]]:
    """Institutions whose upload matched their commitment but that the round did not use: what the round computation
    itself left out (``who -> (update sha, chain sample count)``)."""
    commits = {c.institution: c for c in report.round(number).commitments}
    uploads = {u.institution: u.sha256 for u in record.uploads}
    left_out = {}
    for who, reason in sorted((record.excluded or {}).items()):
        c, sha = commits.get(who), uploads.get(who)
        if c is None or sha is None or reason == "not selected for this round" or reason.startswith("stored update"):
            continue
        if binding(number, who, Digest(sha)) == c.update_hash:
            left_out[who] = (sha, int(c.sample_count))
    return left_out


# ---------------------------------------------------------------------------------------------
# The whole verification


def verify_bounty(client, db, bounty_id: int, *, source: AggregatorSource | None = None, recompute: bool = False,
                  task: str | Path | None = None, validation: str | Path | None = None,
                  rules: str | Path | None = None) -> dict:
    """Run every check that the given inputs allow; returns the report (shape in the module doc).

    Parameters
    ----------
    client : FedLedgerClient
    db : path
        A synced event index (:func:`ledger.audit.sync_index`).
    bounty_id : int
    source : AggregatorSource, optional
        The aggregator's store (``HttpAggregator(url)``); without it the store checks are skipped.
    recompute : bool
        Re-run aggregation and scoring (needs ``source``, ``task``, ``validation`` and ``rules``).

    Raises
    ------
    ChainError
        Unknown bounty id.
    ConfigError
        ``recompute`` without its inputs.
    """
    from ledger.audit import trace

    if recompute and (source is None or task is None or validation is None or rules is None):
        raise ConfigError(RECOMPUTE_NEEDS)
    report = trace(db, bounty_id, client)
    checks = chain_checks(report, client, bounty_id)
    skipped = []
    if source is not None:
        store, records, payloads = store_checks(report, source, bounty_id, commitment_binding(client, bounty_id))
        checks += store
        if recompute and task is not None and validation is not None and rules is not None:  # checked above
            checks += recompute_checks(report, source, bounty_id, records, payloads, task=task, validation=validation,
                                       rules=rules,
                                       binding=commitment_binding(client, bounty_id))
        else:
            skipped.append("recompute: pass --recompute --task --validation --rules to re-run aggregation and scoring")
    else:
        skipped.append("round_records, updates_match_commitments, recompute: pass --aggregator URL")
    return {
        "bounty_id": bounty_id,
        "verified": all(c.ok for c in checks),
        "checks": [asdict(c) for c in checks],
        "reasons": [f"{c.name}: {c.detail}" for c in checks if not c.ok],
        "skipped": skipped,
    }


def format_report(report: dict) -> str:
    """The report as text: one line per check, then the verdict."""
    lines = [f"bounty {report['bounty_id']}"]
    for check in report["checks"]:
        lines.append(f"  {'ok  ' if check['ok'] else 'FAIL'}  {check['name']}: {check['detail']}")
    for item in report["skipped"]:
        lines.append(f"  skip  {item}")
    lines.append("VERIFIED" if report["verified"] else f"NOT VERIFIED: {len(report['reasons'])} check(s) failed")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``verify`` to the ``audit`` group of ``ledger.cli`` (ledger does not import this module)."""
    from fedcore.output import add_format_option
    from ledger.cli import add_deployment_option, add_rpc_option, audit_subcommands

    verify = audit_subcommands(subparsers).add_parser(
        "verify", help="check a bounty end to end: commitments, money, stored updates, recomputed model and scores",
        description=(
            "Check a bounty from the chain's events and the contract: every scored participant committed in its "
            "round, no one twice and no copied hash, funded = credited + refunded + escrowed (events against the "
            "contract), claimed <= credited. With --aggregator, also that every stored update hashes to its "
            "commitment; with --recompute, re-run the round's aggregation and scoring from the downloaded updates "
            "and the validation set and compare the model hash and the fixed-point scores with the chain's, bit "
            "for bit. Exit code 0 when verified, 1 when not (the report is printed either way)."
        ),
    )
    verify.add_argument("--bounty", type=int, required=True, metavar="ID", help="the bounty id")
    verify.add_argument("--aggregator", default=None, metavar="URL",
                        help="the aggregator's HTTP API, to download round records, updates and models")
    verify.add_argument("--recompute", action="store_true",
                        help="re-run aggregation and scoring (needs --aggregator, --task, --validation, --rules)")
    verify.add_argument("--task", default=None, metavar="PATH", help="the task spec JSON (checked against the chain)")
    verify.add_argument("--validation", default=None, metavar="PATH",
                        help="the validation CSV (its sha256 is checked against the chain first)")
    verify.add_argument("--rules", default=None, metavar="PATH",
                        help="the bounty's round rules JSON (its hash is checked against the chain first; the "
                             "recomputation uses exactly these rules, never this build's defaults)")
    add_rpc_option(verify)
    add_deployment_option(verify)
    verify.add_argument("--db", default=None, metavar="PATH", help="event index (default: <deployment>.index.sqlite)")
    add_format_option(verify)
    verify.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from fedcore.output import emit
    from ledger.audit import default_index_path, sync_index
    from ledger.chain import connect
    from ledger.client import FedLedgerClient
    from ledger.deployment import Deployment

    if args.recompute and not (args.aggregator and args.task and args.validation and args.rules):
        raise ConfigError(RECOMPUTE_NEEDS)
    deployment = Deployment.load(args.deployment)
    w3 = connect(args.rpc)
    client = FedLedgerClient.from_deployment(w3, deployment)
    db = args.db or default_index_path(args.deployment)
    sync_index(w3, deployment, db)
    source = HttpAggregator(args.aggregator) if args.aggregator else None
    report = verify_bounty(client, db, args.bounty, source=source, recompute=args.recompute, task=args.task,
                           validation=args.validation, rules=args.rules)
    emit(report, args.format, text=format_report)
    return 0 if report["verified"] else EXIT_NOT_VERIFIED
