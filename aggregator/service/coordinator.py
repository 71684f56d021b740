"""The round coordinator: open, collect, aggregate, score, finalize, repeat, surviving a crash at any step.

Each call of :meth:`Coordinator.step` reads the chain first, then the SQLite state, and makes exactly one
move; :meth:`Coordinator.run` calls it in a loop until the bounty is completed, cancelled or expired.

Restart safety comes from three rules:

1. **The chain decides what happened.** A round is opened only when the chain's ``roundsOpened`` equals
   ``roundsFinalized`` (no open round) and never twice: if the process died after sending ``openRound``, the
   next step sees the round open on chain and only records it. A round the chain shows finalized is recorded as
   finalized, never finalized again.
2. **Write before acting.** The global model, the invitation list and the round's settings are saved (step
   ``opening``) before ``openRound`` is sent; the new model, the optimizer state, every decision and the scores
   are saved (step ``scored``) before ``finalizeRound`` is sent.
3. **Never recompute a saved result.** A round found at ``scored`` is finalized with the saved scores; the
   scorer is not called again.

On a bounty with a scoring committee (quorum q > 1) a ``scored`` round is finalized through
``finalizeRoundAttested`` once q - 1 other members attested exactly the saved outcome (:mod:`.committee`; the
attestations are saved with the round, so a restart finalizes with them), and lapsed (``lapseRound``) once it stalled
without them.

A round's inputs are the chain's commitments (``UpdateCommitted`` events: hash and sample count) and the
accepted uploads; an auditor recomputes it from the stored blobs (``GET .../models/{sha}``,
``.../updates/{sha}``, ``.../states/{sha}``) and the round record (``GET .../rounds/{r}``): strategy and
parameters, optimizer state before the round, scorer and parameters, and the scoring seed.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from aggregator.rounds import RoundInputs, RoundOutcome, compute_round
from aggregator.service import committee
from aggregator.service.context import ServiceContext
from aggregator.service.eligibility import commit_refusal
from aggregator.service.selection import eligible, idle_invitees, select_clients
from aggregator.service.state import Decision, RoundState
from aggregator.service.store import sha_hex
from aggregator.service.verify import bound_commitment, select_updates
from fedcore import codec
from fedcore.errors import AggregatorError, CodecError, ContractRevert, FedLedgerError
from fedcore.protocol import CoordinatorPhase as Phase
from fedcore.protocol import RoundStatus, RoundStep
from fedcore.rules import RoundRules, rules_hash_hex
from fedcore.task import TaskSpec
from fedcore.types import Update
from ledger.client import BountyStatus, TxRecord

log = logging.getLogger("fedledger.aggregator")

ComputeFn = Callable[[RoundInputs, RoundRules, TaskSpec], RoundOutcome]
MAX_BACKOFF = 30.0
# TEST-ONLY fault injection (tests/e2e): FEDLEDGER_FAULT=crash-after:scored makes the process exit at once (code 137,
# as if SIGKILLed) right after a round's scores are saved and before finalizeRound is sent. That exact crash point
# cannot be hit reliably from outside the process; nothing sets this variable in normal use.
FAULT_ENV = "FEDLEDGER_FAULT"


def _fault_point(step: str) -> None:
    """Test-only: die here when ``$FEDLEDGER_FAULT`` is ``crash-after:<step>`` (see FAULT_ENV)."""
    if os.environ.get(FAULT_ENV) == f"crash-after:{step}":
        log.warning("%s=crash-after:%s: exiting now (test-only fault injection)", FAULT_ENV, step)
        logging.shutdown()
        os._exit(137)


class Coordinator:
    """Drives one bounty's rounds.

    Parameters
    ----------
    context : ServiceContext
    compute : callable, optional
        The round computation, :func:`aggregator.rounds.compute_round` (tests wrap it to count calls).
    on_complete : callable, optional
        Called once when :meth:`run` ends because the bounty is over.
    monotonic : callable
        Monotonic seconds (the upload grace period is measured with it).
    """

    def __init__(self, context: ServiceContext, *, compute: ComputeFn = compute_round,
                 on_complete: Callable[[str], None] | None = None, monotonic: Callable[[], float] = time.monotonic):
        self.context = context
        self.compute = compute
        self.on_complete = on_complete
        self.monotonic = monotonic
        self._closed_seen: dict[int, float] = {}

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> Phase | None:
        """Step until the bounty is over or ``stop`` is set; chain and other errors are logged and retried."""
        status = self.context.status
        status.running = True
        delay = self.context.settings.poll_interval
        try:
            while not stop.is_set():
                try:
                    outcome = self.step()
                except FedLedgerError as exc:
                    log.warning("round step failed: %s", exc)
                    status.set(Phase.ERROR, str(exc))
                    stop.wait(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                except Exception as exc:  # a bug: keep the traceback in the log, keep serving
                    log.exception("round step crashed")
                    status.set(Phase.ERROR, f"{type(exc).__name__}: {exc}")
                    stop.wait(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                delay = self.context.settings.poll_interval
                status.set(outcome)
                if outcome.terminal:
                    log.info("bounty %s is %s", self.context.bounty_id, outcome)
                    if self.on_complete is not None:
                        self.on_complete(outcome)
                    return outcome
                if outcome == Phase.WAITING:
                    stop.wait(self.context.settings.poll_interval)
        finally:
            status.running = False
        return None

    def run_until(self, *outcomes: str, max_steps: int = 100) -> Phase:
        """Step until one of ``outcomes`` (or a terminal one) is reached; for tests and scripts."""
        for _ in range(max_steps):
            outcome = self.step()
            if outcome in outcomes or outcome.terminal:
                return outcome
        raise AggregatorError(f"no {'/'.join(outcomes)} within {max_steps} steps")

    def step(self) -> Phase:
        """Make one move; returns what happened.

        Returns
        -------
        CoordinatorPhase
            ``"opened"``, ``"waiting"`` (round open, nothing to do yet), ``"closed"`` (uploads closed),
            ``"scored"``, ``"finalized"``, or the terminal ``"completed"``, ``"cancelled"``, ``"expired"``
            (deadline passed with rounds left; the sponsor may cancel and be refunded).
        """
        ctx = self.context
        bounty = ctx.ledger.bounty()
        if bounty.status == BountyStatus.CANCELLED:
            ctx.state.set_meta("bounty_status", RoundStatus.CANCELLED)
            return Phase.CANCELLED
        if bounty.rounds_opened > bounty.rounds_finalized:
            return self._advance(bounty.rounds_opened, bounty)
        for number in range(1, bounty.rounds_finalized + 1):
            record = ctx.state.round(number)
            if record is not None and record.step not in (RoundStep.FINALIZED, RoundStep.LAPSED):
                self._record_finalized_on_chain(record)
        if bounty.status == BountyStatus.COMPLETED:
            ctx.state.set_meta("bounty_status", RoundStatus.COMPLETED)
            return Phase.COMPLETED
        return self._open(bounty.rounds_finalized + 1, bounty)

    # -- opening --------------------------------------------------------------------------------
    def _open(self, number: int, bounty) -> Phase:
        ctx = self.context
        record = ctx.state.round(number) or self._prepare(number, bounty)
        if ctx.ledger.now() > bounty.deadline:
            ctx.state.set_meta("bounty_status", RoundStatus.EXPIRED)
            return Phase.EXPIRED
        if record.step != RoundStep.OPENING:
            raise AggregatorError(f"round {number} is not open on chain but recorded as {record.step}")
        try:
            opened = ctx.ledger.open_round(bytes.fromhex(record.global_model_sha))
        except ContractRevert as exc:
            if exc.name != "DeadlinePassed":
                raise
            ctx.state.set_meta("bounty_status", RoundStatus.EXPIRED)
            return Phase.EXPIRED
        if opened.round != number:
            raise AggregatorError(f"the chain opened round {opened.round}, expected {number}")
        self._record_open(number, opened)
        log.info("round %d opened with model 0x%s, %d invited", number, record.global_model_sha, len(record.selected))
        return Phase.OPENED

    def _prepare(self, number: int, bounty, global_model_sha: str | None = None) -> RoundState:
        """Save round ``number``'s global model, invitations and settings (step ``opening``)."""
        ctx = self.context
        state_before = None
        if number == 1:
            initial = ctx.initial_model()
            if global_model_sha is None or global_model_sha == sha_hex(initial):
                global_model_sha = ctx.blobs.put("models", initial)
        else:
            if global_model_sha is None:
                global_model_sha = bytes(ctx.ledger.round(number - 1).new_model_hash).hex()
            previous = ctx.state.round(number - 1)
            if previous is not None:  # a lapsed round changed nothing: its successor starts where it started
                lapsed = previous.step == RoundStep.LAPSED
                state_before = previous.state_before_sha if lapsed else previous.state_after_sha
        if not ctx.blobs.has("models", global_model_sha):
            raise AggregatorError(
                f"round {number} starts from model 0x{global_model_sha}, which {ctx.settings.state_dir} does not hold"
            )
        institutions = ctx.ledger.institution_records(ctx.ledger.institutions())
        past = [(r.selected, [u.institution for u in ctx.state.uploads(n)])
                for n in range(1, number) if (r := ctx.state.round(n)) is not None]
        rule = ctx.commit_rule(number)
        candidates = eligible(institutions, min_reputation=rule.min_reputation, min_stake=rule.min_stake,
                              idle=idle_invitees(past))
        s = ctx.settings
        selected = select_clients(candidates, mode=s.selection, k=s.clients_per_round, seed=s.seed,
                                  bounty_id=ctx.bounty_id, round_=number)
        return ctx.state.insert_opening(number, global_model_sha=global_model_sha, selected=selected,
                                        settings=self.round_settings(number), state_before_sha=state_before)

    def round_settings(self, number: int) -> dict[str, Any]:
        """What round ``number`` is computed with (saved with the round, read back by auditors): the bounty's
        rules, their hash and this round's scoring seed, and how institutions were invited."""
        ctx = self.context
        s = ctx.settings
        return {
            "rules": ctx.rules.to_dict(), "rules_hash": rules_hash_hex(ctx.rules), "seed": ctx.rules.round_seed(number),
            "selection": s.selection, "clients_per_round": s.clients_per_round,
        }

    def _record_open(self, number: int, opened: TxRecord | None = None) -> RoundState:
        ctx = self.context
        chain_round = ctx.ledger.round(number)
        opened = opened or ctx.ledger.event_tx("RoundOpened", number)
        return ctx.state.mark_open(number, commit_deadline=chain_round.commit_deadline, opened_at=chain_round.opened_at,
                                   open_tx=opened.tx_hash if opened else None,
                                   open_block=opened.block_number if opened else None)

    # -- an open round --------------------------------------------------------------------------
    def _advance(self, number: int, bounty) -> Phase:
        ctx = self.context
        chain_round = ctx.ledger.round(number)
        chain_model = bytes(chain_round.global_model_hash).hex()
        record = ctx.state.round(number)
        if record is None:  # opened on chain, unknown here (a lost state dir): adopt it if we hold its model
            record = self._prepare(number, bounty, global_model_sha=chain_model)
        if record.global_model_sha != chain_model:
            raise AggregatorError(
                f"round {number} is open on chain with model 0x{chain_model} "
                f"but the state has 0x{record.global_model_sha}"
            )
        if record.step == RoundStep.OPENING:
            self._record_open(number)
            log.info("round %d was already open on chain: recorded", number)
            return Phase.OPENED
        if record.step == RoundStep.OPEN:
            ready = self._ready_to_close(record, chain_round)
            self._post_signed_commitments(record, chain_round, closing=ready)
            if not ready:
                return Phase.WAITING
            ctx.state.begin_scoring(number)
            log.info("round %d closed to uploads with %d uploads", number, len(ctx.state.uploads(number)))
            return Phase.CLOSED
        if record.step == RoundStep.SCORING:
            self._score(record)
            _fault_point(RoundStep.SCORED)  # test-only crash hook, a no-op unless FEDLEDGER_FAULT is set
            return Phase.SCORED
        if record.step == RoundStep.SCORED:
            if record.new_model_sha is None:
                raise AggregatorError(f"round {number} is scored but has no new model in the aggregator's state")
            if bounty.quorum > 1:
                return self._finalize_attested(record, bounty, chain_round)
            tx = ctx.ledger.finalize_round(number, bytes.fromhex(record.new_model_sha), record.fixed_point_scores)
            ctx.state.mark_finalized(number, finalize_tx=tx)
            log.info("round %d finalized (tx %s), new model 0x%s", number, tx, record.new_model_sha)
            return Phase.FINALIZED
        raise AggregatorError(f"round {number} is open on chain but recorded as {record.step}")

    def _ready_to_close(self, record: RoundState, chain_round) -> bool:
        ctx = self.context
        s = ctx.settings
        uploaded = {u.institution for u in ctx.state.uploads(record.round)}
        invited = set(record.selected)
        now = ctx.now()
        if now <= chain_round.commit_deadline:  # early only on the whole invited set, never on the first N uploads
            return bool(invited) and invited <= uploaded
        # The window is closed: the committers are final. Wait (a grace period) for invitees still uploading.
        pending = [a for a in ctx.ledger.commitments(record.round, from_block=record.open_block)
                   if a not in uploaded and a in invited]
        if not pending:
            return True
        first_seen = self._closed_seen.setdefault(record.round, self.monotonic())
        return self.monotonic() - first_seen >= s.upload_grace

    def _post_signed_commitments(self, record: RoundState, chain_round, *, closing: bool) -> None:
        """Post the gasless commitments handed over with uploads in one transaction, while the commit window is
        open: once every invitee has uploaded, or ``commit_batch_margin`` seconds before the window closes.
        Uploads were checked against the contract's commit rule; a commitment whose institution no longer passes it
        (e.g. slashed since its upload) is left out of the batch. A batch the contract still refuses is retried one
        commitment at a time (the last resort), so no institution's commitment can keep the others off chain."""
        ctx = self.context
        now = ctx.now()
        if now > chain_round.commit_deadline or not (
                closing or now >= chain_round.commit_deadline - ctx.settings.commit_batch_margin):
            return
        signed = ctx.state.signed_commitments(record.round)
        on_chain = ctx.ledger.commitments(record.round, from_block=record.open_block) if signed else {}
        pending = [c for c in signed if c.institution not in on_chain]
        if pending:
            rule = ctx.commit_rule(record.round)
            records = ctx.ledger.institution_records([c.institution for c in pending])
            refusals = {c.institution: refusal for c, inst in zip(pending, records, strict=True)
                        if (refusal := commit_refusal(inst, rule, c.declared_epsilon)) is not None}
            for who, (_, why) in sorted(refusals.items()):
                log.warning("round %d: %s's signed commitment left out of the batch: %s", record.round, who, why)
            pending = [c for c in pending if c.institution not in refusals]
        if not pending:
            return
        for batch in [pending] if len(pending) < 2 else [pending, *([c] for c in pending)]:
            try:
                tx = ctx.ledger.commit_updates_signed(record.round, batch)
            except ContractRevert as exc:
                log.warning("round %d: %d signed commitment(s) refused: %s", record.round, len(batch), exc)
                continue
            log.info("round %d: posted %d signed commitment(s) in one transaction (tx %s)",
                     record.round, len(batch), tx)
            if batch is pending:
                return

    # -- scoring --------------------------------------------------------------------------------
    def _score(self, record: RoundState) -> RoundState:
        ctx = self.context
        number = record.round
        commitments = ctx.ledger.commitments(number, from_block=record.open_block)
        uploads = {u.institution: u.sha256 for u in ctx.state.uploads(number)}
        refusals = {r.institution: f"{r.code}: {r.detail}" for r in ctx.state.refusals(number)}
        kept, excluded = select_updates(commitments, uploads, partial(bound_commitment, ctx, number), record.selected,
                                        refusals)
        limit = max(ctx.settings.max_upload_bytes, codec.DEFAULT_MAX_BYTES)
        global_weights = codec.decode(ctx.blobs.get("models", record.global_model_sha), expected=ctx.expected,
                                      max_bytes=limit)
        updates: list[Update] = []
        for institution, match in sorted(kept.items()):
            try:
                arrays = codec.decode(ctx.blobs.get("updates", match.sha256), expected=ctx.expected,
                                      max_bytes=limit)
            except (AggregatorError, CodecError) as exc:
                excluded[institution] = f"stored update unusable: {exc}"
                continue
            updates.append(Update(institution, arrays, match.commitment.sample_count))

        started = time.perf_counter()
        inputs = RoundInputs(round=number, global_weights=global_weights, updates=tuple(updates),
                             strategy_state=self._load_state(record.state_before_sha),
                             X_val=ctx.validation.X, y_val=ctx.validation.y, groups_val=ctx.validation.groups)
        outcome = self.compute(inputs, ctx.rules, ctx.spec)
        log.info("round %d scored %d updates in %.1fs", number, len(updates), time.perf_counter() - started)
        new_model_sha = ctx.blobs.put("models", outcome.model_bytes)
        state_after_sha = (
            ctx.blobs.put("states", codec.encode(outcome.strategy_state)) if outcome.strategy_state else None
        )
        report = scores_report(outcome.scores)
        fixed = {a: int(v) for a, v in report["fixed_point"].items()}
        excluded.update(outcome.rejected)  # outside the task's bounds, or the round cannot be computed with it
        updates = [u for u in updates if u.institution not in outcome.rejected]
        used = [{"institution": u.institution, "sha256": kept[u.institution].sha256,
                 "num_samples": u.num_samples} for u in updates]
        decisions = [
            Decision(u.institution, kept[u.institution].sha256, u.num_samples, True, None,
                     report["values"].get(u.institution), fixed[u.institution])
            for u in updates
        ]
        for a, reason in sorted(excluded.items()):
            commitment = commitments.get(a)
            sha = uploads.get(a) or (commitment.update_hash.hex() if commitment else "")
            decisions.append(Decision(a, sha, commitment.sample_count if commitment else 0, False, reason))
        aggregate_report = {
            "used_by_strategy": list(outcome.used), "excluded_by_strategy": dict(outcome.excluded),
            "metrics": {k: _finite_or_none(v) for k, v in outcome.metrics.items()},
            "hyperparameters": _jsonable(outcome.hyperparameters), "clipped": dict(outcome.clipped),
        }
        return ctx.state.save_scored(number, new_model_sha=new_model_sha, state_after_sha=state_after_sha, used=used,
                                     excluded=excluded, aggregate=aggregate_report, scores=report, decisions=decisions)

    # -- a committee's quorum ---------------------------------------------------------------------
    def _finalize_attested(self, record: RoundState, bounty, chain_round) -> Phase:
        """Finalize with the saved outcome once ``quorum - 1`` other members attested exactly it; lapse the round
        once it has stalled (its commit window plus the recovery grace passed) without them."""
        ctx = self.context
        number = record.round
        own = committee.own_outcome(ctx, record)
        assert own is not None  # the round is scored
        signatures = committee.matching_signatures(ctx, record, own)
        if len(signatures) >= bounty.quorum - 1:
            tx = ctx.ledger.finalize_round(number, bytes.fromhex(record.new_model_sha or ""),
                                           record.fixed_point_scores, signatures[:bounty.quorum - 1])
            ctx.state.mark_finalized(number, finalize_tx=tx, note=f"{tx} with {len(signatures)} attestation(s)")
            log.info("round %d finalized with %d attestation(s) (tx %s)", number, len(signatures), tx)
            return Phase.FINALIZED
        # the contract judges a stall by block time (not this machine's clock): an idle dev chain lapses once it mines
        if ctx.ledger.now() > chain_round.commit_deadline + bounty.recovery_grace:
            try:
                tx = ctx.ledger.lapse_round()
            except ContractRevert as exc:  # someone else lapsed it first: the chain tells on the next step
                log.warning("round %d: lapseRound refused: %s", number, exc)
                return Phase.WAITING
            ctx.state.mark_lapsed(number, lapse_tx=tx, note=f"no quorum: {len(signatures)} of {bounty.quorum - 1} "
                                                          "attestation(s) besides ours")
            log.warning("round %d lapsed without a quorum (%d of %d attestations), tx %s", number, len(signatures),
                        bounty.quorum - 1, tx)
            return Phase.LAPSED
        return Phase.WAITING

    def _load_state(self, sha: str | None) -> dict[str, np.ndarray]:
        if not sha:
            return {}
        return codec.decode(self.context.blobs.get("states", sha), max_bytes=1 << 40)

    # -- reconciling ----------------------------------------------------------------------------
    def _record_finalized_on_chain(self, record: RoundState) -> None:
        ctx = self.context
        lapsed = ctx.ledger.event_tx("RoundLapsed", record.round, from_block=record.open_block)
        if lapsed is not None:
            ctx.state.mark_lapsed(record.round, lapse_tx=lapsed.tx_hash, note="found lapsed on chain")
            log.info("round %d: found lapsed on chain", record.round)
            return
        chain_round = ctx.ledger.round(record.round)
        chain_model = bytes(chain_round.new_model_hash).hex()
        note = "found finalized on chain"
        if record.new_model_sha and chain_model != record.new_model_sha:
            note += f" with model 0x{chain_model}, not the saved 0x{record.new_model_sha}"
            log.warning("round %d: %s", record.round, note)
        finalized = ctx.ledger.event_tx("RoundFinalized", record.round, from_block=record.open_block)
        ctx.state.mark_finalized(record.round, finalize_tx=finalized.tx_hash if finalized else None, note=note)
        log.info("round %d: %s", record.round, note)


def scores_report(scores: Any) -> dict[str, Any]:
    """A scorer's ``RoundScores`` as JSON-ready data (fixed-point scores as decimal strings,
    non-finite floats as None)."""
    if scores is None:
        return {"estimator": None, "values": {}, "std_errors": {}, "row_std_errors": {}, "fixed_point": {},
                "evaluations": 0, "v_empty": None, "v_grand": None, "seconds": 0.0, "metric": None,
                "estimator_params": None, "permutations": 0, "converged": True}
    get = ((lambda k, d=None: scores.get(k, d)) if isinstance(scores, Mapping)
           else (lambda k, d=None: getattr(scores, k, d)))
    return {
        "estimator": get("estimator"),
        "values": {str(k): _finite_or_none(v) for k, v in dict(get("values", {}) or {}).items()},
        "std_errors": {str(k): _finite_or_none(v) for k, v in dict(get("std_errors", {}) or {}).items()},
        "row_std_errors": {str(k): _finite_or_none(v) for k, v in dict(get("row_std_errors", {}) or {}).items()},
        "fixed_point": {str(k): str(int(v)) for k, v in dict(get("fixed_point", {}) or {}).items()},
        "evaluations": int(get("evaluations", 0) or 0),
        "v_empty": _finite_or_none(get("v_empty")),
        "v_grand": _finite_or_none(get("v_grand")),
        "seconds": _finite_or_none(get("seconds")),
        "metric": get("metric"),
        "estimator_params": _jsonable(get("estimator_params")),
        "permutations": int(get("permutations", 0) or 0),
        "converged": bool(get("converged", True)),
    }


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, int | str | bool) or value is None:
        return value
    return str(value)
