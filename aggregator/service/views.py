"""Turning the state into API answers (shared by the routers)."""

from __future__ import annotations

from aggregator.service.context import ServiceContext
from aggregator.service.schemas import CurrentRound, RoundDetail
from aggregator.service.state import RoundRecord

_STEP_STATUS = {"open": "open", "scoring": "scoring", "scored": "scoring", "finalized": "finalized"}


def hex0x(value: str | None) -> str | None:
    return None if value is None else "0x" + value


def current_record(context: ServiceContext) -> RoundRecord | None:
    """The latest round the chain has opened (a round still ``opening`` is not announced yet)."""
    latest = context.state.latest_round()
    if latest is not None and latest.step == "opening":
        latest = context.state.round(latest.round - 1) if latest.round > 1 else None
    return latest


def status_of(context: ServiceContext, record: RoundRecord | None) -> str:
    bounty_status = context.state.meta("bounty_status")
    if bounty_status in ("cancelled", "expired"):
        return bounty_status
    if record is None:
        return "waiting"
    if record.step == "finalized":
        num_rounds = context.state.meta("num_rounds")
        if bounty_status == "completed" or (num_rounds is not None and record.round >= int(num_rounds)):
            return "completed"
    return _STEP_STATUS.get(record.step, "waiting")


def current_round(context: ServiceContext) -> CurrentRound:
    record = current_record(context)
    return CurrentRound(
        bounty_id=context.bounty_id,
        round=record.round if record else 0,
        status=status_of(context, record),
        global_model_hash=hex0x(record.global_model_sha) if record else None,
        new_model_hash=hex0x(record.new_model_sha) if record else None,
        commit_deadline=int(record.commit_deadline or 0) if record else 0,
        selected=list(record.selected) if record else [],
        uploads=len(context.state.uploads(record.round)) if record else 0,
    )


def round_detail(context: ServiceContext, record: RoundRecord) -> RoundDetail:
    state = context.state
    current = current_record(context)
    if current is not None and current.round == record.round:
        status = status_of(context, record)
    else:
        status = "waiting" if record.step == "opening" else _STEP_STATUS.get(record.step, "waiting")
    scores = None
    if record.scores is not None:
        scores = dict(record.scores)
    return RoundDetail(
        bounty_id=context.bounty_id,
        round=record.round,
        status=status,
        step=record.step,
        global_model_hash=hex0x(record.global_model_sha),
        new_model_hash=hex0x(record.new_model_sha),
        commit_deadline=record.commit_deadline,
        opened_at=record.opened_at,
        selected=list(record.selected),
        settings=record.settings,
        strategy_state_before=hex0x(record.state_before_sha),
        strategy_state_after=hex0x(record.state_after_sha),
        uploads=[{"institution": u.institution, "sha256": hex0x(u.sha256), "size": u.size, "received_at": u.received_at}
                 for u in state.uploads(record.round)],
        used=None if record.used is None else [{**u, "sha256": hex0x(u["sha256"])} for u in record.used],
        excluded=record.excluded,
        decisions=[
            {"institution": d.institution, "sha256": hex0x(d.sha256) if d.sha256 else "", "num_samples": d.num_samples,
             "used": d.used, "reason": d.reason, "score": d.score,
             "score_fixed": None if d.score_fixed is None else str(d.score_fixed)}
            for d in state.decisions(record.round)
        ],
        aggregate=record.aggregate,
        scores=scores,
        open_tx=record.open_tx,
        finalize_tx=record.finalize_tx,
        journal=[{"step": j["step"], "at": j["at"], "note": j["note"]} for j in state.journal(record.round)],
    )
