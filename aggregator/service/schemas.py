"""Pydantic models of every JSON request and response of the aggregator's HTTP API.

Conventions: hashes and transaction ids are ``0x``-prefixed lowercase hex; addresses are checksummed;
on-chain fixed-point scores are decimal strings (they exceed JavaScript's 2**53); every error is
``{"detail": "one line"}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RoundStatus = Literal["waiting", "open", "scoring", "finalized", "completed", "cancelled", "expired"]


class ErrorResponse(BaseModel):
    """Every rejection: one clear line."""

    detail: str = Field(examples=["signer 0xAbC... has not committed an update in round 2"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    bounty_id: int
    chain_id: int
    ledger: str = Field(description="address of the FedLedger contract")
    aggregator: str = Field(description="address of this aggregator's key (the bounty's aggregator)")
    coordinator: str = Field(description="what the round loop last did: opened, waiting, closed, scored, finalized, error...")
    last_error: str | None = None


class TrainingSettingsOut(BaseModel):
    """``fedcore.task.TrainingSettings`` as JSON."""

    model_config = ConfigDict(extra="forbid")

    local_steps: int | None
    local_epochs: int | None
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    fedprox_mu: float
    seed: int


class TaskSpecOut(BaseModel):
    """``fedcore.task.TaskSpec.to_dict()``: ``TaskSpec.from_dict`` of this JSON hashes (``task_hash``) to the
    bounty's on-chain ``taskSpecHash``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    model: str
    feature_columns: list[str]
    label_column: str
    metric: str
    model_params: dict[str, Any]
    training: TrainingSettingsOut


class CurrentRound(BaseModel):
    """The round institutions should be working on.

    ``status``: ``waiting`` (no round opened yet), ``open`` (commit on chain, then upload), ``scoring`` (uploads
    closed), ``finalized`` (the next round opens shortly), ``completed`` (last round finalized), ``cancelled``
    (the sponsor cancelled), ``expired`` (the deadline passed with rounds left). Train only when ``status`` is
    ``open`` and your address is in ``selected``.
    """

    bounty_id: int
    round: int = Field(description="0 before the first round")
    status: RoundStatus
    global_model_hash: str | None = Field(description="0x sha256 of the model GET .../model serves; equals the chain's round.globalModelHash")
    new_model_hash: str | None = Field(default=None, description="0x sha256 of the model this round produced, once scored")
    commit_deadline: int = Field(description="chain timestamp after which commitUpdate reverts; 0 before the first round")
    selected: list[str] = Field(description="institutions invited to this round")
    uploads: int = Field(description="uploads accepted so far in this round")


class UploadAccepted(BaseModel):
    sha256: str = Field(description="0x sha256 of the body (= the institution's on-chain commitment)")
    institution: str = Field(description="the signer, recovered from X-Signature")
    status: Literal["accepted"] = "accepted"
    round: int


class UploadInfo(BaseModel):
    institution: str
    sha256: str
    size: int
    received_at: float


class UsedUpdate(BaseModel):
    institution: str
    sha256: str
    num_samples: int = Field(description="sample count from the institution's on-chain commitment")


class DecisionInfo(BaseModel):
    institution: str
    sha256: str
    num_samples: int
    used: bool
    reason: str | None = None
    score: float | None = None
    score_fixed: str | None = Field(default=None, description="the on-chain score (18 decimals) as a decimal string")


class RoundSettingsInfo(BaseModel):
    """What the round was computed with; with the stored blobs this recomputes the round bit for bit."""

    rules: dict[str, Any] = Field(description="the bounty's round rules (fedcore.rules.RoundRules as JSON)")
    rules_hash: str = Field(description="their sha256, the bounty's rulesHash on chain")
    seed: int = Field(description="the scorer's seed for this round, derived from the rules' seed and the round")
    selection: str
    clients_per_round: int | None = None
    quorum: int | None = None


class ScoresInfo(BaseModel):
    estimator: str | None
    values: dict[str, float | None]
    std_errors: dict[str, float | None]
    fixed_point: dict[str, str]
    evaluations: int
    v_empty: float | None
    v_grand: float | None
    seconds: float | None
    metric: str | None = None
    estimator_params: dict[str, Any] | None = None
    permutations: int = 0
    converged: bool = True


class JournalEntry(BaseModel):
    step: str
    at: float
    note: str | None = None


class RoundDetail(BaseModel):
    """Everything the aggregator recorded about one round (for nodes, auditors and the explorer)."""

    bounty_id: int
    round: int
    status: RoundStatus
    step: Literal["opening", "open", "scoring", "scored", "finalized"]
    global_model_hash: str
    new_model_hash: str | None
    commit_deadline: int | None
    opened_at: int | None
    selected: list[str]
    settings: RoundSettingsInfo
    strategy_state_before: str | None = Field(description="0x sha256 of the server-optimizer state the round started from (GET .../states/{sha})")
    strategy_state_after: str | None
    uploads: list[UploadInfo]
    used: list[UsedUpdate] | None = Field(description="updates that entered aggregation and scoring, sorted by institution")
    excluded: dict[str, str] | None = Field(description="institution -> why its commitment or upload was not used")
    decisions: list[DecisionInfo]
    aggregate: dict[str, Any] | None = Field(description="the strategy's own report: used/excluded by the rule, metrics, hyperparameters")
    scores: ScoresInfo | None
    open_tx: str | None
    finalize_tx: str | None
    journal: list[JournalEntry]
