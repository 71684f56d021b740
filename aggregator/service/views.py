"""Turning the state into API answers (shared by the routers)."""

from __future__ import annotations

from aggregator.service.context import ServiceContext
from aggregator.service.state import AttestationRecord, RoundState
from fedcore.protocol import (
    AttestationInfo,
    DecisionInfo,
    FitConfig,
    JournalEntry,
    Outcome,
    RoundInfo,
    RoundReport,
    RoundSettings,
    RoundStatus,
    RoundStep,
    ScoresReport,
    UploadInfo,
    UsedUpdate,
)
from fedcore.rules import RoundRules

# The status institutions see for a round at each step (OPENING is not announced yet).
_STEP_STATUS = {RoundStep.OPEN: RoundStatus.OPEN, RoundStep.SCORING: RoundStatus.SCORING,
                RoundStep.SCORED: RoundStatus.SCORING, RoundStep.FINALIZED: RoundStatus.FINALIZED,
                RoundStep.LAPSED: RoundStatus.FINALIZED}  # a lapsed round is over too: the next one opens shortly
#: Steps after which a round is over on chain (finalized with an outcome, or lapsed without one).
CLOSED_STEPS = (RoundStep.FINALIZED, RoundStep.LAPSED)


def hex0x(value: str | None) -> str | None:
    return None if value is None else "0x" + value


def uploads_visible(record: RoundState) -> bool:
    """Whether a round's uploads (hashes and bytes) may be shown: only once its commit window closed, so no
    participant can copy another's update while it can still commit."""
    return record.step not in (RoundStep.OPENING, RoundStep.OPEN)


def updates_public(context: ServiceContext, record: RoundState) -> bool:
    """Whether anyone may download a round's updates: once it closed, or, on a bounty with a scoring committee, once
    it is over on chain (until then only members fetch them, signed: :mod:`aggregator.service.committee`)."""
    if not uploads_visible(record):
        return False
    return record.step in CLOSED_STEPS or not context.ledger.scorers()


def current_record(context: ServiceContext) -> RoundState | None:
    """The latest round the chain has opened (a round still ``opening`` is not announced yet)."""
    latest = context.state.latest_round()
    if latest is not None and latest.step == RoundStep.OPENING:
        latest = context.state.round(latest.round - 1) if latest.round > 1 else None
    return latest


def status_of(context: ServiceContext, record: RoundState | None) -> RoundStatus:
    bounty_status = context.state.meta("bounty_status")
    if bounty_status in (RoundStatus.CANCELLED, RoundStatus.EXPIRED):
        return RoundStatus(bounty_status)
    if record is None:
        return RoundStatus.WAITING
    if record.step in CLOSED_STEPS:
        num_rounds = context.state.meta("num_rounds")
        if bounty_status == RoundStatus.COMPLETED or (num_rounds is not None and record.round >= int(num_rounds)):
            return RoundStatus.COMPLETED
    return _STEP_STATUS.get(record.step, RoundStatus.WAITING)


def round_fit_config(record: RoundState) -> FitConfig:
    """The training overrides of the rules ``record``'s round is computed with (a node derives the same from the
    bounty's rules and refuses to train if they differ)."""
    return FitConfig.model_validate(RoundRules.from_dict(record.settings["rules"]).fit_config())


def current_round(context: ServiceContext) -> RoundInfo:
    record = current_record(context)
    if record is None:
        return RoundInfo(bounty_id=context.bounty_id, round=0, status=status_of(context, None))
    return RoundInfo(
        bounty_id=context.bounty_id,
        round=record.round,
        status=status_of(context, record),
        global_model_hash="0x" + record.global_model_sha,
        new_model_hash=hex0x(record.new_model_sha),
        commit_deadline=int(record.commit_deadline or 0),
        selected=list(record.selected),
        uploads=len(context.state.uploads(record.round)),
        fit_config=round_fit_config(record),
    )


def round_detail(context: ServiceContext, record: RoundState) -> RoundReport:
    state = context.state
    current = current_record(context)
    if current is not None and current.round == record.round:
        status = status_of(context, record)
    else:
        status = _STEP_STATUS.get(record.step, RoundStatus.WAITING)
    return RoundReport(
        bounty_id=context.bounty_id,
        round=record.round,
        status=status,
        step=record.step,
        global_model_hash="0x" + record.global_model_sha,
        new_model_hash=hex0x(record.new_model_sha),
        commit_deadline=record.commit_deadline,
        opened_at=record.opened_at,
        selected=list(record.selected),
        settings=RoundSettings.model_validate(record.settings),
        strategy_state_before=hex0x(record.state_before_sha),
        strategy_state_after=hex0x(record.state_after_sha),
        uploads=[UploadInfo(institution=u.institution, sha256=u.sha256, size=u.size, received_at=u.received_at)
                 for u in state.uploads(record.round)] if updates_public(context, record) else [],
        used=None if record.used is None else [UsedUpdate.model_validate(u) for u in record.used],
        excluded=record.excluded,
        decisions=[
            DecisionInfo(institution=d.institution, sha256=d.sha256 or None, num_samples=d.num_samples,
                         used=d.used, reason=d.reason, score=d.score,
                         score_fixed=None if d.score_fixed is None else str(d.score_fixed))
            for d in state.decisions(record.round)
        ],
        aggregate=record.aggregate,
        scores=None if record.scores is None else ScoresReport.model_validate(record.scores),
        open_tx=record.open_tx,
        finalize_tx=record.finalize_tx,
        journal=[JournalEntry(step=j["step"], at=j["at"], note=j["note"]) for j in state.journal(record.round)],
        attestations=attestations(context, record),
    )


def attestations(context: ServiceContext, record: RoundState) -> list[AttestationInfo]:
    """The other members' attestations held for a round, each compared with the aggregator's own outcome."""
    from aggregator.service import committee

    held = context.state.attestations(record.round)
    own = committee.own_outcome(context, record) if held else None
    return [attestation_info(a, own) for a in held]


def attestation_info(held: AttestationRecord, own: dict | None) -> AttestationInfo:
    """One held attestation, with whether it matches ``own`` (the aggregator's outcome; None before scoring)."""
    o = held.outcome
    return AttestationInfo(scorer=held.scorer, received_at=held.received_at,
                           matches=None if own is None else o == own,
                           outcome=Outcome(new_model_hash="0x" + o["new_model_hash"], participants=o["participants"],
                                           scores=o["scores"]))
