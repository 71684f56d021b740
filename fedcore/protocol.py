"""The aggregator's wire format: one pydantic model per JSON body, the round steps and statuses, the rejection codes.

The service answers with these models, the node client and the auditor parse with them; nothing else spells
the format out. Conventions: hashes are ``0x`` + 64 lowercase hex (accepted with or without ``0x``, any case);
addresses are checksummed; on-chain fixed-point scores are decimal strings (they exceed JavaScript's 2**53);
every 4xx/5xx body is :class:`ErrorBody`, ``{"detail": "one line", "code": RejectionCode}``: clients branch on
``code``, never on the text.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_DECIMAL = re.compile(r"^-?[0-9]+$")


# -- enums --------------------------------------------------------------------------------------------------------

class RoundStep(enum.StrEnum):
    """Where the aggregator is in one round; each step is saved before the action that follows it.

    ``OPENING`` (model, invitations and settings saved; ``openRound`` maybe mined) -> ``OPEN`` (uploads accepted)
    -> ``SCORING`` (uploads closed) -> ``SCORED`` (new model and scores saved) -> ``FINALIZED`` (on chain), or
    ``LAPSED`` (a committee bounty's round that no quorum attested in time: closed on chain without an outcome).
    """

    OPENING = "opening"
    OPEN = "open"
    SCORING = "scoring"
    SCORED = "scored"
    FINALIZED = "finalized"
    LAPSED = "lapsed"


class RoundStatus(enum.StrEnum):
    """What an institution should do: train only when ``OPEN`` (and selected).

    ``WAITING``: no round announced yet; ``SCORING``: uploads closed; ``FINALIZED``: the next round opens
    shortly; ``COMPLETED``: last round finalized; ``CANCELLED``: the sponsor cancelled; ``EXPIRED``: the deadline
    passed with rounds left.
    """

    WAITING = "waiting"
    OPEN = "open"
    SCORING = "scoring"
    FINALIZED = "finalized"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        """Nothing more happens in the bounty."""
        return self in (RoundStatus.COMPLETED, RoundStatus.CANCELLED, RoundStatus.EXPIRED)


class CoordinatorPhase(enum.StrEnum):
    """What the aggregator's round loop last did (``Health.coordinator``)."""

    STARTING = "starting"
    OPENED = "opened"
    WAITING = "waiting"
    CLOSED = "closed"
    SCORED = "scored"
    FINALIZED = "finalized"
    LAPSED = "lapsed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        return self in (CoordinatorPhase.COMPLETED, CoordinatorPhase.CANCELLED, CoordinatorPhase.EXPIRED)


class RejectionCode(enum.StrEnum):
    """Why a request was refused; carried in every error body (:class:`ErrorBody`)."""

    MALFORMED = "malformed"  # bad request, body not canonical safetensors, wrong tensors, NaN/Inf, empty
    TOO_LARGE = "too_large"  # body over the upload limit
    UNSIGNED = "unsigned"  # X-Signature missing
    BAD_SIGNATURE = "bad_signature"  # X-Signature malformed or not recoverable
    NOT_REGISTERED = "not_registered"  # the signer is not a registered institution
    NOT_COMMITTED = "not_committed"  # the signer has no commitment in the round
    NOT_SELECTED = "not_selected"  # the signer was not invited to the round
    NOT_ELIGIBLE = "not_eligible"  # the contract would refuse the signer's commitment (stake, reputation, budget)
    HASH_MISMATCH = "hash_mismatch"  # sha256 of the body is not the signer's commitment
    ROUND_CLOSED = "round_closed"  # the round is not the open one
    DUPLICATE_UPLOAD = "duplicate_upload"  # the signer's update for the round is already accepted
    UNKNOWN_BOUNTY = "unknown_bounty"  # this aggregator serves another bounty
    NOT_FOUND = "not_found"  # no such round, model, state or update
    ROUND_OPEN = "round_open"  # a round's uploads are sealed until its commit window closes
    BODY_TIMEOUT = "body_timeout"  # the upload body did not arrive within the read timeout
    BUSY = "busy"  # every upload slot is taken: retry after the Retry-After header's seconds
    UNAVAILABLE = "unavailable"  # the chain is unreachable or the service is starting (retry later)
    INTERNAL = "internal"  # a failure of the aggregator itself
    NOT_SCORER = "not_scorer"  # the signer is not on the bounty's scoring committee


#: The HTTP status that goes with each code (the one place it is decided).
REJECTION_STATUS: dict[RejectionCode, int] = {
    RejectionCode.MALFORMED: 400,
    RejectionCode.TOO_LARGE: 413,
    RejectionCode.UNSIGNED: 401,
    RejectionCode.BAD_SIGNATURE: 401,
    RejectionCode.NOT_REGISTERED: 403,
    RejectionCode.NOT_COMMITTED: 403,
    RejectionCode.NOT_SELECTED: 403,
    RejectionCode.NOT_ELIGIBLE: 403,
    RejectionCode.HASH_MISMATCH: 409,
    RejectionCode.ROUND_CLOSED: 409,
    RejectionCode.DUPLICATE_UPLOAD: 409,
    RejectionCode.UNKNOWN_BOUNTY: 404,
    RejectionCode.NOT_FOUND: 404,
    RejectionCode.ROUND_OPEN: 403,
    RejectionCode.BODY_TIMEOUT: 408,
    RejectionCode.BUSY: 503,
    RejectionCode.UNAVAILABLE: 503,
    RejectionCode.INTERNAL: 500,
    RejectionCode.NOT_SCORER: 403,
}

#: Largest bounty or round number a path may carry (the ledger's ids and rounds stay far below it); larger or
#: negative numbers are refused as MALFORMED before anything looks them up.
MAX_PATH_NUMBER = 2**32 - 1

#: Upload headers: the update's sha256 (0x + 64 hex) and the signature over it (fedcore.signing.sign_upload).
#: Both arrive before the body, so the aggregator checks the signer and its commitment before reading a byte.
UPDATE_SHA_HEADER = "X-Update-Sha256"
SIGNATURE_HEADER = "X-Signature"
#: Optional upload headers of a gasless commitment: the institution's EIP-712 signature over its commitment
#: (fedcore.commitments.sign_commitment, 0x + 130 hex), the sample count and the declared cumulative epsilon it
#: signed (an integer in millionths; absent means 0, a bounty without DP). The aggregator posts every such
#: commitment of the round in one ``commitUpdatesSigned`` transaction before the commit window closes.
COMMITMENT_SIGNATURE_HEADER = "X-Commitment-Signature"
SAMPLE_COUNT_HEADER = "X-Sample-Count"
DECLARED_EPSILON_HEADER = "X-Declared-Epsilon"
#: A committee member's request for a round's updates: its EIP-191 signature over what it asks for and when
#: (fedcore.attestations.sign_fetch), and that time (unix seconds; a request older than FETCH_MAX_AGE is refused).
SCORER_SIGNATURE_HEADER = "X-Scorer-Signature"
SCORER_TIME_HEADER = "X-Scorer-Time"
FETCH_MAX_AGE = 300


# -- field types --------------------------------------------------------------------------------------------------

def _hash0x(value: Any) -> Any:
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and _HEX64.match(value):
        return "0x" + value.lower().removeprefix("0x")
    raise ValueError("expected a sha256 as 64 hex digits, with or without 0x")


def _checksum(value: Any) -> Any:
    if isinstance(value, str) and is_address(value):
        return to_checksum_address(value)
    raise ValueError("expected a 20-byte hex address")


def _decimal(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str) or not _DECIMAL.match(str(value)):
        raise ValueError("expected an integer as a decimal string")
    return str(int(value))


Hash = Annotated[str, BeforeValidator(_hash0x)]
Address = Annotated[str, BeforeValidator(_checksum)]
DecimalInt = Annotated[str, BeforeValidator(_decimal)]


class _Model(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


# -- bodies -------------------------------------------------------------------------------------------------------

class ErrorBody(_Model):
    """Every refusal: one clear line, and the code to branch on."""

    detail: str = Field(examples=["signer 0xAbC... has not committed an update in round 2"])
    code: RejectionCode


class Health(_Model):
    """``GET /health``."""

    status: Literal["ok"] = "ok"
    bounty_id: int
    chain_id: int
    ledger: Address = Field(description="address of the FedLedger contract")
    aggregator: Address = Field(description="address of this aggregator's key (the bounty's aggregator)")
    coordinator: CoordinatorPhase = Field(description="what the round loop last did")
    last_error: str | None = None


class TrainingSettingsInfo(_Model):
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


class DeclaredBoundsInfo(_Model):
    """``fedcore.task.DeclaredBounds`` as JSON."""

    model_config = ConfigDict(extra="forbid")

    min_samples: int
    max_samples: int
    max_update_norm: float
    norm_rule: str


class TaskInfo(_Model):
    """``GET /bounties/{id}/task``: ``fedcore.task.TaskSpec.to_dict()``; ``TaskSpec.from_dict`` of this JSON hashes
    (``task_hash``) to the bounty's on-chain ``taskSpecHash``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    model: str
    feature_columns: list[str]
    label_column: str
    metric: str
    model_params: dict[str, Any]
    training: TrainingSettingsInfo
    bounds: DeclaredBoundsInfo
    personalization: dict[str, Any] | None = Field(
        default=None, description="fedcore.task.PersonalizationSettings; absent (null) for the default, none")
    scaling: dict[str, Any] | None = Field(
        default=None, description="fedcore.task.FeatureScaling (mean, std, source); absent (null): no scaling")
    population: dict[str, Any] | None = Field(
        default=None, description="fedcore.task.TargetPopulation (weighting, group_column, group_weights); absent "
                                  "(null): pooled")
    privacy: dict[str, Any] | None = Field(
        default=None, description="fedcore.task.PrivacySettings; absent (null) for the default, no DP")


class FitConfig(_Model):
    """One round's training overrides, handed to every institution by the bounty's strategy.

    Each field overrides the task's ``fedcore.task.TrainingSettings`` field of the same name; ``None`` keeps the
    task's value. ``node.training.train_local(config=fit.overrides())`` applies them.
    """

    model_config = ConfigDict(extra="forbid")

    fedprox_mu: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                     description="FedProx proximal weight mu (0 disables the term)")
    local_steps: int | None = Field(default=None, ge=1)
    local_epochs: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    optimizer: str | None = None
    momentum: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    weight_decay: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    def overrides(self) -> dict[str, Any]:
        """The fields that are set, as ``train_local``'s ``config``."""
        return self.model_dump(exclude_none=True)


class RoundInfo(_Model):
    """``GET /bounties/{id}/rounds/current``: the round institutions should be working on.

    Train only when ``status`` is ``open`` and :meth:`selects` your address, with ``fit_config``.
    """

    bounty_id: int
    round: int = Field(description="0 before the first round")
    status: RoundStatus
    global_model_hash: Hash | None = Field(
        default=None, description="sha256 of the model GET .../model serves; equals the chain's round.globalModelHash")
    new_model_hash: Hash | None = Field(
        default=None, description="sha256 of the model this round produced, once scored")
    commit_deadline: int = Field(
        default=0, description="chain timestamp after which commitUpdate reverts; 0 before round 1")
    selected: list[Address] = Field(default_factory=list, description="institutions invited to this round; empty: all")
    uploads: int = Field(default=0, description="uploads accepted so far in this round")
    fit_config: FitConfig = Field(default_factory=FitConfig, description="this round's training overrides")

    def selects(self, address: str) -> bool:
        return not self.selected or address.lower() in {a.lower() for a in self.selected}


class UploadAccepted(_Model):
    """``POST /bounties/{id}/rounds/{r}/updates`` answered 202."""

    sha256: Hash = Field(description="sha256 of the body (= the institution's on-chain commitment)")
    institution: Address = Field(description="the signer, recovered from X-Signature")
    status: Literal["accepted"] = "accepted"
    round: int


class UploadInfo(_Model):
    institution: Address
    sha256: Hash
    size: int
    received_at: float


class UsedUpdate(_Model):
    institution: Address
    sha256: Hash
    num_samples: int = Field(description="sample count from the institution's on-chain commitment")


class DecisionInfo(_Model):
    institution: Address
    sha256: Hash | None = None
    num_samples: int
    used: bool
    reason: str | None = None
    score: float | None = None
    score_fixed: DecimalInt | None = Field(default=None, description="the on-chain score (18 decimals)")


class RoundSettings(_Model):
    """What a round was computed with; with the stored blobs this recomputes the round bit for bit."""

    rules: dict[str, Any] = Field(description="the bounty's round rules (fedcore.rules.RoundRules as JSON)")
    rules_hash: str = Field(description="their sha256, the bounty's rulesHash on chain")
    seed: int = Field(description="the scorer's seed for this round, derived from the rules' seed and the round")
    selection: str | None = None
    clients_per_round: int | None = None


class ScoresReport(_Model):
    """The scorer's report of a round (``fixed_point``: the on-chain scores)."""

    estimator: str | None = None
    values: dict[str, float | None] = Field(default_factory=dict)
    std_errors: dict[str, float | None] = Field(default_factory=dict)
    row_std_errors: dict[str, float | None] = Field(
        default_factory=dict, description="each value's standard error over the validation rows (rules' row_spread)")
    fixed_point: dict[Address, DecimalInt] = Field(default_factory=dict)
    evaluations: int = 0
    v_empty: float | None = None
    v_grand: float | None = None
    seconds: float | None = None
    metric: str | None = None
    estimator_params: dict[str, Any] | None = None
    permutations: int = 0
    converged: bool = True


class JournalEntry(_Model):
    step: RoundStep
    at: float
    note: str | None = None


class Outcome(_Model):
    """A round's outcome as the committee signs it (fedcore.attestations): participants in the contract's order
    (ascending committed update hash) and their fixed-point scores, in the same order."""

    new_model_hash: Hash
    participants: list[Address] = Field(default_factory=list)
    scores: list[DecimalInt] = Field(default_factory=list)


class AttestationBody(_Model):
    """``POST /bounties/{id}/rounds/{r}/attestations``: a committee member's signature over the outcome it computed."""

    scorer: Address
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte EIP-712 signature over the outcome")
    outcome: Outcome


class AttestationInfo(_Model):
    """An attestation the aggregator holds for a round; ``matches`` compares it with the aggregator's own outcome
    (None before the aggregator has scored)."""

    scorer: Address
    outcome: Outcome
    matches: bool | None = None
    received_at: float


class RefusedUpload(_Model):
    """An invited institution's upload the aggregator refused in a round (its latest refusal): the aggregator's
    reason for not serving its update."""

    institution: Address
    code: RejectionCode
    detail: str
    at: float


class CommitteeRound(_Model):
    """``GET /bounties/{id}/rounds/{r}/committee/updates``: what a scorer needs to recompute a round."""

    bounty_id: int
    round: int
    global_model_hash: Hash
    selected: list[Address] = Field(default_factory=list)
    uploads: list[UploadInfo] = Field(default_factory=list)
    refused: list[RefusedUpload] = Field(
        default_factory=list, description="invited institutions without an accepted upload whose upload the "
                    "aggregator refused, with the refusal; an invited committer neither served nor here was left "
                    "out without a reason")


class RoundReport(_Model):
    """``GET /bounties/{id}/rounds/{r}``: everything the aggregator recorded about one round (nodes, auditors,
    the explorer)."""

    bounty_id: int
    round: int
    status: RoundStatus
    step: RoundStep
    global_model_hash: Hash
    new_model_hash: Hash | None = None
    commit_deadline: int | None = None
    opened_at: int | None = None
    selected: list[Address] = Field(default_factory=list)
    settings: RoundSettings
    strategy_state_before: Hash | None = Field(
        default=None, description="sha256 of the server-optimizer state the round started from (GET .../states/{sha})")
    strategy_state_after: Hash | None = None
    uploads: list[UploadInfo] = Field(
        default_factory=list, description="accepted uploads; empty while the round is open (sealed until it closes)")
    used: list[UsedUpdate] | None = Field(
        default=None, description="updates that were scored and posted on chain, sorted by institution (those the "
                    "strategy or the contribution gate kept out of the aggregate: aggregate.excluded_by_strategy)")
    excluded: dict[Address, str] | None = Field(
        default=None, description="institution -> why its commitment or upload was not used")
    decisions: list[DecisionInfo] = Field(default_factory=list)
    aggregate: dict[str, Any] | None = Field(
        default=None, description="the strategy's own report: used/excluded by the rule, metrics, hyperparameters")
    scores: ScoresReport | None = None
    open_tx: str | None = None
    finalize_tx: str | None = None
    journal: list[JournalEntry] = Field(default_factory=list)
    attestations: list[AttestationInfo] = Field(
        default_factory=list, description="other committee members' attestations the aggregator holds")

    def fixed_point_scores(self) -> dict[str, int] | None:
        """The on-chain scores by institution, as integers (None before scoring)."""
        return None if self.scores is None else {who: int(value) for who, value in self.scores.fixed_point.items()}


__all__ = [
    "COMMITMENT_SIGNATURE_HEADER", "MAX_PATH_NUMBER", "REJECTION_STATUS", "SAMPLE_COUNT_HEADER", "SIGNATURE_HEADER",
    "UPDATE_SHA_HEADER", "SCORER_SIGNATURE_HEADER", "SCORER_TIME_HEADER", "FETCH_MAX_AGE", "Address",
    "AttestationBody", "AttestationInfo", "CommitteeRound", "CoordinatorPhase", "Outcome",
    "DecimalInt", "DecisionInfo", "ErrorBody", "FitConfig", "Hash",
    "Health", "JournalEntry", "RejectionCode", "RoundInfo", "RoundReport", "RoundSettings", "RoundStatus", "RoundStep",
    "ScoresReport", "TaskInfo", "DeclaredBoundsInfo", "TrainingSettingsInfo", "UploadAccepted", "UploadInfo",
    "UsedUpdate",
]
