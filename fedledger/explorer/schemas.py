"""Response models of the explorer's JSON API.

Integers that can exceed JavaScript's 2**53 (wei amounts, scores, sample counts) are decimal strings;
block numbers, rounds, timestamps and reputations (basis points, 10,000 = 1.0) are plain integers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Amount(BaseModel):
    wei: str = Field(description="exact amount in the asset's base unit (wei for ETH), a decimal string")
    eth: str | None = Field(description="ETH with 6 decimals, rounded toward zero; None for an ERC-20 asset")


class Asset(BaseModel):
    token: str = Field(description="token address; the zero address means ether")
    is_eth: bool
    symbol: str


class Books(BaseModel):
    funded: Amount
    credited: Amount
    refunded: Amount
    escrowed: Amount = Field(description="funded - credited - refunded")
    claimed: Amount
    unclaimed: Amount = Field(description="credited - claimed")
    no_overpayment: bool = Field(description="no institution claimed more than it was credited")
    matches_contract: bool | None = Field(
        description="the contract's funded/credited/refunded/escrowed at the synced block equal the event "
                    "books; None where not checked")


class BountySummary(BaseModel):
    id: int
    status: Literal["active", "completed", "cancelled"]
    asset: Asset
    sponsor: str
    aggregator: str
    num_rounds: int
    rounds_opened: int
    rounds_finalized: int
    deadline: int
    created_block: int
    created_time: int
    books: Books


class Commitment(BaseModel):
    institution: str
    name: str | None
    update_hash: str
    sample_count: str
    epsilon: float | None = Field(default=None, description="the institution's declared cumulative DP epsilon after "
                                  "this round (None: no differential privacy declared)")
    scored: bool = Field(description="False when the round was finalized (or is open) without a score for it")
    score: str | None = Field(description="fixed-point score as posted on chain")
    credit: Amount | None
    reputation: int | None = Field(description="the institution's reputation after this round (basis points)")
    block: int
    tx: str


class ScorerAttestation(BaseModel):
    scorer: str
    name: str | None = Field(description="the scorer's institution name, if it is one")
    outcome_digest: str = Field(description="the EIP-712 digest of the outcome it signed (OutcomeAttested) or "
                                            "computed instead (ScorerDissented)")
    tx: str


class RoundOut(BaseModel):
    round: int
    status: Literal["open", "finalized", "lapsed"]
    global_model_hash: str = Field(description="the global model the round started from")
    new_model_hash: str | None = Field(description="the aggregate posted when the round was finalized")
    commit_deadline: int
    opened_block: int
    opened_time: int
    finalized_block: int | None
    reward: Amount | None
    credited: Amount | None
    participants: int | None
    commitments: list[Commitment]
    attestations: list[ScorerAttestation] = Field(
        default_factory=list, description="committee members counted towards the quorum that finalized the round")
    dissents: list[ScorerAttestation] = Field(
        default_factory=list, description="committee members that put another outcome on record")


class BountyInstitution(BaseModel):
    institution: str
    name: str | None
    credited: Amount
    claimed: Amount
    unclaimed: Amount
    cumulative_score: str = Field(description="sum of the institution's positive scores in this bounty")
    rounds_scored: int
    reputation: int | None = Field(description="reputation after its last scored round of this bounty")


class Movement(BaseModel):
    kind: str
    party: str
    name: str | None
    asset: Asset
    amount: Amount
    block: int
    time: int
    tx: str


class TimelineItem(BaseModel):
    block: int
    time: int
    tx: str
    event: str
    args: dict[str, Any] = Field(description="the event's arguments but bountyId; integers as decimal strings")


class BountyDetail(BountySummary):
    task_spec_hash: str
    validation_set_hash: str
    min_reputation: int
    rounds: list[RoundOut]
    institutions: list[BountyInstitution]
    payouts: list[Movement] = Field(description="money leaving the contract: reward and revenue claims, refunds")
    fundings: list[Movement] = Field(description="money entering it: bounty funding, revenue paid in")
    timeline: list[TimelineItem]


class Earnings(BaseModel):
    asset: Asset
    credited: Amount
    claimed: Amount
    unclaimed: Amount


class InstitutionOut(BaseModel):
    address: str
    name: str
    metadata_uri: str
    status: Literal["registered", "leaving", "left"]
    stake: Amount
    slashed: Amount
    joined_block: int
    joined_time: int
    initial_reputation: int
    reputation: int = Field(description="current reputation (basis points), from the latest event that set it")
    rounds_scored: int
    cumulative_score: str
    bounties: list[int]
    earnings: list[Earnings]


class RoundRef(BaseModel):
    index: int
    bounty: int | None
    round: int | None
    block: int | None
    time: int | None
    label: str


class ReputationPoint(BaseModel):
    index: int = Field(description="column in ReputationOut.rounds")
    reputation: int
    scored: bool
    score: str | None


class ReputationSeries(BaseModel):
    institution: str
    name: str
    points: list[ReputationPoint]


class ReputationOut(BaseModel):
    rounds: list[RoundRef] = Field(description="column 0 is the start; then every finalized round in chain order")
    series: list[ReputationSeries]


class StatusOut(BaseModel):
    chain_id: int
    contract: str
    deployment_block: int
    synced_block: int | None = Field(description="last block in the index")
    events: int = Field(description="events in the index")
    synced_at: float | None = Field(description="unix time of the last successful sync")
    sync_error: str | None = Field(description="why the last sync failed (the index is then served as it is)")
    sync_interval: float
