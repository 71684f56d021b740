"""The wire models of :mod:`fedcore.protocol`: every model survives model -> JSON -> model unchanged, field types
normalize what clients may send, and FitConfig covers only real training settings."""

from __future__ import annotations

import dataclasses

import pytest
from eth_utils import to_checksum_address
from pydantic import BaseModel, ValidationError

from fedcore import protocol
from fedcore.protocol import (
    REJECTION_STATUS,
    AttestationBody,
    AttestationInfo,
    CommitteeRound,
    DecisionInfo,
    DeclaredBoundsInfo,
    ErrorBody,
    FitConfig,
    Health,
    JournalEntry,
    Outcome,
    RefusedUpload,
    RejectionCode,
    RoundInfo,
    RoundReport,
    RoundSettings,
    RoundStatus,
    RoundStep,
    ScoresReport,
    TaskInfo,
    TrainingSettingsInfo,
    UploadAccepted,
    UploadInfo,
    UsedUpdate,
)
from fedcore.task import TaskSpec, TrainingSettings, task_hash

A, B = "0x" + "ab" * 20, "0x" + "cd" * 20
H1, H2 = "0x" + "11" * 32, "0x" + "22" * 32
SPEC = TaskSpec(name="t", model="logreg", feature_columns=("a", "b"), label_column="y",
                training=TrainingSettings(local_steps=5, lr=0.1, fedprox_mu=0.01))
SETTINGS = RoundSettings(rules={"strategy": "fedprox", "strategy_params": {"mu": 0.01}}, rules_hash=H1, seed=7,
                         selection="all", clients_per_round=None)
SCORES = ScoresReport(estimator="gtg", values={A: 0.6, B: None}, std_errors={A: 0.01, B: None},
                      row_std_errors={A: 0.02, B: None},
                      fixed_point={A: "600000000000000000000", B: "-3"}, evaluations=4, v_empty=0.5, v_grand=0.7,
                      seconds=0.1, metric="accuracy", estimator_params={"eps": 0.001}, permutations=3, converged=False)
REPORT = RoundReport(
    bounty_id=1, round=2, status=RoundStatus.FINALIZED, step=RoundStep.FINALIZED, global_model_hash=H1,
    new_model_hash=H2, commit_deadline=100, opened_at=40, selected=[A, B], settings=SETTINGS,
    strategy_state_before=None, strategy_state_after=H2,
    uploads=[UploadInfo(institution=A, sha256=H1, size=160, received_at=1.5)],
    used=[UsedUpdate(institution=A, sha256=H1, num_samples=10)], excluded={B: "committed but did not upload"},
    decisions=[DecisionInfo(institution=A, sha256=H1, num_samples=10, used=True, score=0.6, score_fixed="6"),
               DecisionInfo(institution=B, sha256=None, num_samples=3, used=False, reason="committed but did not upload")],
    aggregate={"used": [A], "metrics": {"norm": 0.5}}, scores=SCORES, open_tx="0x" + "33" * 32, finalize_tx=None,
    journal=[JournalEntry(step=RoundStep.OPENING, at=1.0), JournalEntry(step=RoundStep.OPEN, at=2.0, note="0xtx")],
)
OUTCOME = Outcome(new_model_hash=H2, participants=[A], scores=["600000000000000000000"])
EXAMPLES: list[BaseModel] = [
    ErrorBody(detail="signer 0xAb has not committed", code=RejectionCode.NOT_COMMITTED),
    Health(bounty_id=1, chain_id=1337, ledger=A, aggregator=B, coordinator="scored", last_error=None),
    TaskInfo.model_validate(SPEC.to_dict()),
    TrainingSettingsInfo.model_validate(SPEC.to_dict()["training"]),
    DeclaredBoundsInfo.model_validate(SPEC.to_dict()["bounds"]),
    FitConfig(fedprox_mu=0.01, lr=0.5, local_steps=3),
    RoundInfo(bounty_id=1, round=2, status=RoundStatus.OPEN, global_model_hash=H1, commit_deadline=100, selected=[A],
              uploads=1, fit_config=FitConfig(fedprox_mu=0.01)),
    RoundInfo(bounty_id=1, round=0, status=RoundStatus.WAITING),
    UploadAccepted(sha256=H1, institution=A, round=2),
    SETTINGS, SCORES, REPORT,
    *REPORT.uploads, *REPORT.used, *REPORT.decisions, *REPORT.journal,
    OUTCOME,
    AttestationBody(scorer=B, signature="0x" + "ab" * 65, outcome=OUTCOME),
    AttestationInfo(scorer=B, outcome=OUTCOME, matches=True, received_at=3.5),
    CommitteeRound(bounty_id=1, round=2, global_model_hash=H1, selected=[A, B], uploads=REPORT.uploads,
                   refused=[RefusedUpload(institution=B, code=RejectionCode.NOT_ELIGIBLE, detail="stake below", at=4.5)]),
    RefusedUpload(institution=B, code=RejectionCode.HASH_MISMATCH, detail="body hashes to 0x12", at=4.0),
]


def test_every_protocol_model_has_an_example():
    models = {obj for obj in vars(protocol).values()
              if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == protocol.__name__
              and not obj.__name__.startswith("_")}
    assert models == {type(example) for example in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: type(e).__name__)
def test_model_to_json_and_back_is_equal(example):
    again = type(example).model_validate_json(example.model_dump_json())
    assert again == example
    assert again.model_dump_json() == example.model_dump_json()


@pytest.mark.parametrize("personalization", [None, {"method": "ditto", "validation_splits": 2}])
def test_the_task_survives_the_wire_with_its_hash(personalization):
    from dataclasses import replace

    from fedcore.task import PersonalizationSettings

    spec = SPEC if personalization is None else replace(SPEC, personalization=PersonalizationSettings(**personalization))
    info = TaskInfo.model_validate_json(TaskInfo.model_validate(spec.to_dict()).model_dump_json())
    again = TaskSpec.from_dict(info.model_dump())  # null personalization: the default
    assert task_hash(again) == task_hash(spec) and again.personalization == spec.personalization


def test_hashes_and_addresses_are_normalized_and_checked():
    info = RoundInfo(bounty_id=1, round=1, status="open", global_model_hash="AB" * 32, selected=[A.upper().replace("0X", "0x")])
    assert info.global_model_hash == "0x" + "ab" * 32
    assert info.selected == [to_checksum_address(A)] and info.selects(A) and not info.selects(B)
    for bad in ({"global_model_hash": "0x1234"}, {"selected": ["hospital"]}, {"status": "paused"}):
        with pytest.raises(ValidationError):
            RoundInfo.model_validate({"bounty_id": 1, "round": 1, "status": "open", **bad})
    with pytest.raises(ValidationError):
        ScoresReport(fixed_point={A: "1.5"})


def test_fit_config_overrides_only_training_settings_and_refuses_unknown_or_bad_values():
    known = {f.name for f in dataclasses.fields(TrainingSettings)}
    assert set(FitConfig.model_fields) <= known
    assert FitConfig().overrides() == {} and FitConfig(fedprox_mu=0.5).overrides() == {"fedprox_mu": 0.5}
    for bad in ({"mu": 0.1}, {"fedprox_mu": -1}, {"fedprox_mu": float("nan")}, {"lr": 0}):
        with pytest.raises(ValidationError):
            FitConfig.model_validate(bad)


def test_every_rejection_code_has_a_status_and_terminal_statuses_are_the_bounty_s_end():
    assert set(REJECTION_STATUS) == set(RejectionCode)
    assert all(400 <= status < 600 for status in REJECTION_STATUS.values())
    assert {s for s in RoundStatus if s.terminal} == {RoundStatus.COMPLETED, RoundStatus.CANCELLED, RoundStatus.EXPIRED}
    assert ErrorBody.model_validate({"detail": "x", "code": "duplicate_upload"}).code is RejectionCode.DUPLICATE_UPLOAD
