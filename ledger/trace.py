"""The books of one bounty, built once from its chain events: what was created, each round, each institution, the money.

:func:`build_trace` is a pure function of the indexed events (rows of :func:`ledger.indexer.events`); everything
that reports on a bounty (``audit trace``, ``audit verify``, the explorer, the demo) reads the typed
:class:`BountyTrace` it returns instead of re-deriving commitments, scores and credits from the timeline.
Amounts are integers in the bounty's asset's smallest unit (wei for ether); hashes are :class:`~fedcore.types.Digest`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from fedcore.errors import ChainError
from fedcore.types import Digest
from ledger.client import Commitment

WEI_PER_ETH = 10**18
_WEI_PER_MICRO_ETH = 10**12


def format_eth(wei: int) -> str:
    """``wei`` as ETH with exactly 6 decimals, rounded toward zero (``-0.000001`` stays negative)."""
    sign = "-" if wei < 0 else ""
    whole, fraction = divmod(abs(int(wei)) // _WEI_PER_MICRO_ETH, 10**6)
    return f"{sign}{whole}.{fraction:06d}"


def is_eth(token: str) -> bool:
    """Whether ``token`` is the zero address, which means ether."""
    return int(token, 16) == 0


@dataclass(frozen=True)
class Event:
    """One indexed event of the bounty: where it happened and its decoded arguments (hashes as 0x hex)."""

    name: str
    block: int
    time: int
    tx: str
    args: Mapping[str, Any]

    def to_dict(self) -> dict:
        return {"block": self.block, "time": self.time, "tx": self.tx, "event": self.name,
                **{k: v for k, v in self.args.items() if k != "bountyId"}}


@dataclass(frozen=True, kw_only=True)
class Created:
    """The parameters the sponsor fixed in ``BountyCreated``."""

    sponsor: str
    aggregator: str
    token: str
    task_spec_hash: Digest
    validation_set_hash: Digest
    rules_hash: Digest
    num_rounds: int
    commit_window: int
    deadline: int
    min_reputation: int

    def to_dict(self) -> dict:
        return {"sponsor": self.sponsor, "aggregator": self.aggregator, "token": self.token,
                "task_spec_hash": str(self.task_spec_hash), "validation_set_hash": str(self.validation_set_hash),
                "rules_hash": str(self.rules_hash), "num_rounds": self.num_rounds, "commit_window": self.commit_window,
                "deadline": self.deadline, "min_reputation": self.min_reputation}


@dataclass(frozen=True)
class Scored:
    """A ``ContributionScored`` event: the fixed-point score, the credit and the reputation after the round."""

    institution: str
    score: int
    credit: int
    reputation: int


@dataclass(frozen=True)
class Attestation:
    """A scorer's ``OutcomeAttested`` (counted towards the quorum) or ``ScorerDissented`` (its own outcome)."""

    scorer: str
    outcome_digest: Digest
    tx: str

    def to_dict(self) -> dict:
        return {"scorer": self.scorer, "outcome_digest": str(self.outcome_digest), "tx": self.tx}


@dataclass(frozen=True, kw_only=True)
class RoundTrace:
    """One round: opened with a model, the commitments and scores in chain order, and how it was finalized.

    ``commitments`` and ``scored`` keep every event (an auditor checks that nobody appears twice); the mappings
    ``committed`` and ``scores``/``credits`` are by institution.
    """

    number: int
    global_model_hash: Digest
    commit_deadline: int
    opened: Event
    commitments: tuple[Commitment, ...] = ()
    scored: tuple[Scored, ...] = ()
    new_model_hash: Digest | None = None
    reward: int | None = None
    credited: int | None = None
    participants: int | None = None
    finalized: Event | None = None
    attestations: tuple[Attestation, ...] = ()
    dissents: tuple[Attestation, ...] = ()
    lapsed: Event | None = None

    @property
    def is_finalized(self) -> bool:
        return self.finalized is not None

    @property
    def committed(self) -> dict[str, Commitment]:
        """The commitment of each institution (the first, should there be several)."""
        found: dict[str, Commitment] = {}
        for c in self.commitments:
            found.setdefault(c.institution, c)
        return found

    @property
    def used(self) -> dict[str, Commitment]:
        """The commitments of the scored institutions: the updates that entered the round's aggregate."""
        committed = self.committed
        return {s.institution: committed[s.institution] for s in self.scored if s.institution in committed}

    @property
    def unscored(self) -> tuple[str, ...]:
        """Institutions that committed in this finalized round but have no score: their update is not in the outcome.
        The chain cannot tell why (not uploaded, refused at upload, outside the task's bounds, or dropped by the
        aggregator); the aggregator's round record says what it claims."""
        if not self.is_finalized:
            return ()
        scored = {s.institution for s in self.scored}
        return tuple(sorted(who for who in self.committed if who not in scored))

    @property
    def scores(self) -> dict[str, int]:
        return {s.institution: s.score for s in self.scored}

    @property
    def credits(self) -> dict[str, int]:
        return {s.institution: s.credit for s in self.scored}

    @property
    def reputation(self) -> dict[str, int]:
        """Each scored institution's reputation (basis points) after this round."""
        return {s.institution: s.reputation for s in self.scored}

    @property
    def carried(self) -> bool:
        """Whether the finalized round paid nobody (no positive score): its reward stayed for the rounds left."""
        return self.is_finalized and not any(s.score > 0 for s in self.scored)

    def to_dict(self) -> dict:
        return {
            "round": self.number, "global_model_hash": str(self.global_model_hash),
            "commit_deadline": self.commit_deadline,
            "commitments": {c.institution: {"update_hash": str(c.update_hash), "sample_count": c.sample_count,
                                            "epsilon": c.declared_epsilon}
                            for c in self.committed.values()},
            "scores": self.scores, "credits": self.credits, "committed_not_scored": list(self.unscored),
            "attestations": [a.to_dict() for a in self.attestations],
            "dissents": [a.to_dict() for a in self.dissents], "lapsed": self.lapsed is not None,
            "new_model_hash": None if self.new_model_hash is None else str(self.new_model_hash),
            "reward": self.reward, "credited": self.credited, "participants": self.participants,
        }


@dataclass(frozen=True, kw_only=True)
class InstitutionBooks:
    """What one institution earned in the bounty; ``name`` is the one it joined with (None if not indexed)."""

    address: str
    name: str | None
    credited: int = 0
    claimed: int = 0
    cumulative_score: int = 0
    rounds_scored: int = 0
    revenue_claimed: int = 0
    reputation_by_round: Mapping[int, int] = field(default_factory=dict)

    @property
    def unclaimed(self) -> int:
        return self.credited - self.claimed

    @property
    def reputation(self) -> int | None:
        """Reputation after the last round it was scored in (None if never scored)."""
        return self.reputation_by_round[max(self.reputation_by_round)] if self.reputation_by_round else None

    def to_dict(self, eth: bool = True) -> dict:
        money = {"credited": self.credited, "claimed": self.claimed, "unclaimed": self.unclaimed}
        return {"address": self.address, "name": self.name, **money, **_eth_beside(money, eth),
                "cumulative_score": self.cumulative_score, "rounds_scored": self.rounds_scored,
                "revenue_claimed": self.revenue_claimed, "reputation": self.reputation,
                "reputation_by_round": {str(r): v for r, v in sorted(self.reputation_by_round.items())}}


@dataclass(frozen=True, kw_only=True)
class BountyBooks:
    """The bounty's money from events; ``matches_contract`` is None unless compared with the contract."""

    funded: int = 0
    credited: int = 0
    refunded: int = 0
    claimed: int = 0
    revenue_paid: int = 0
    revenue_claimed: int = 0
    matches_contract: bool | None = None

    @property
    def escrowed(self) -> int:
        """The money invariant, rearranged: funded = credited + refunded + escrowed."""
        return self.funded - self.credited - self.refunded

    def matches(self, bounty) -> bool:
        """Whether the contract's counters (a :class:`ledger.client.Bounty`) equal these."""
        return (bounty.funded, bounty.credited, bounty.refunded, bounty.escrowed) == (
            self.funded, self.credited, self.refunded, self.escrowed)


@dataclass(frozen=True, kw_only=True)
class BountyTrace:
    """Everything the chain's events say about one bounty."""

    bounty_id: int
    created: Created
    timeline: tuple[Event, ...]
    rounds: tuple[RoundTrace, ...]
    institutions: Mapping[str, InstitutionBooks]
    books: BountyBooks

    @property
    def is_eth(self) -> bool:
        return is_eth(self.created.token)

    @property
    def finalized_rounds(self) -> tuple[RoundTrace, ...]:
        return tuple(r for r in self.rounds if r.is_finalized)

    @property
    def no_overpayment(self) -> bool:
        return all(i.claimed <= i.credited for i in self.institutions.values())

    def institution(self, address: str) -> InstitutionBooks:
        """The books of ``address``; empty ones if it never committed, was credited or claimed in this bounty."""
        return self.institutions.get(address) or InstitutionBooks(address=address, name=None)

    def round(self, number: int) -> RoundTrace:
        return next(r for r in self.rounds if r.number == number)

    def contribution_shares(self) -> dict[str, float]:
        """Each institution's share of the value the bounty paid for, from the numbers the contract paid from.

        In each round that paid (some score positive), an institution's positive score over the round's positive
        total, weighted by the round's reward; summed, then divided by the rewards of those rounds. This is its
        share of the credits but for floor-division dust, so a contribution share and a payout share never tell
        different stories. Institutions with no positive score are left out (their share is 0).
        """
        weighted: dict[str, Fraction] = {}
        paid = 0
        for r in self.finalized_rounds:
            positive = {s.institution: s.score for s in r.scored if s.score > 0}
            if not positive or not r.reward:
                continue
            paid += r.reward
            total = sum(positive.values())
            for who, score in positive.items():
                weighted[who] = weighted.get(who, Fraction(0)) + Fraction(r.reward * score, total)
        return {who: float(share / paid) for who, share in weighted.items()}

    def to_dict(self) -> dict:
        """JSON-ready (``audit trace --format json``): integers stay integers, hashes 0x hex; ``*_eth`` strings
        (6 decimals, toward zero) stand beside amounts of an ether bounty."""
        b = self.books
        money = {"funded": b.funded, "credited": b.credited, "refunded": b.refunded, "escrowed": b.escrowed,
                 "claimed": b.claimed, "revenue_paid": b.revenue_paid, "revenue_claimed": b.revenue_claimed}
        books = {**money, **_eth_beside(money, self.is_eth), "no_overpayment": self.no_overpayment}
        if b.matches_contract is not None:
            books["matches_contract"] = b.matches_contract
        return {
            "bounty_id": self.bounty_id,
            "created": self.created.to_dict(),
            "timeline": [e.to_dict() for e in self.timeline],
            "rounds": [r.to_dict() for r in self.rounds],
            "institutions": {who: i.to_dict(self.is_eth) for who, i in self.institutions.items()},
            "books": books,
        }


def _eth_beside(amounts: Mapping[str, int], eth: bool) -> dict:
    return {f"{k}_eth": format_eth(v) for k, v in amounts.items()} if eth else {}


# Which argument of an event adds to the bounty's funded or refunded total.
_FUNDED = {"BountyFunded": "amount"}
_REFUNDED = {"BountyCancelled": "refunded", "RemainderRefunded": "amount"}


_ROUND_LISTS = ("commitments", "scored", "attestations", "dissents")


def build_trace(bounty_id: int, rows: Iterable[Mapping], names: Mapping[str, str] | None = None) -> BountyTrace:
    """The typed trace of ``bounty_id`` from its indexed events, in chain order.

    Parameters
    ----------
    bounty_id : int
    rows : iterable of dict
        The bounty's rows of :func:`ledger.indexer.events` (``event``, ``args``, ``block_number``, ``timestamp``,
        ``tx_hash``).
    names : mapping, optional
        Institution address -> the name it joined with (``InstitutionJoined``).

    Raises
    ------
    ChainError
        When no ``BountyCreated`` is among the rows, or an event names a round that was never opened.
    """
    names = names or {}
    timeline = tuple(Event(r["event"], r["block_number"], r["timestamp"], r["tx_hash"], r["args"]) for r in rows)
    created = next((e.args for e in timeline if e.name == "BountyCreated"), None)
    if created is None:
        raise ChainError(f"unknown bounty id {bounty_id}: no BountyCreated event in the index")
    rounds: dict[int, dict] = {}
    people: dict[str, dict] = {}
    money = dict.fromkeys(("funded", "credited", "refunded", "claimed", "revenue_paid", "revenue_claimed"), 0)

    def person(who: str) -> dict:
        return people.setdefault(who, {"credited": 0, "claimed": 0, "cumulative_score": 0, "rounds_scored": 0,
                                       "revenue_claimed": 0, "reputation_by_round": {}})

    def round_of(event: Event) -> dict:
        number = event.args["round"]
        if number not in rounds:
            raise ChainError(f"bounty {bounty_id}: {event.name} in block {event.block} for round {number}, "
                             "which was never opened")
        return rounds[number]

    for event in timeline:
        name, args = event.name, event.args
        if name in _FUNDED:
            money["funded"] += args[_FUNDED[name]]
        elif name in _REFUNDED:
            money["refunded"] += args[_REFUNDED[name]]
        elif name == "RoundOpened":
            rounds[args["round"]] = {"number": args["round"], "global_model_hash": Digest(args["globalModelHash"]),
                                     "commit_deadline": args["commitDeadline"], "opened": event,
                                     "commitments": [], "scored": [], "attestations": [], "dissents": []}
        elif name == "UpdateCommitted":
            round_of(event)["commitments"].append(Commitment(
                args["institution"], Digest(args["updateHash"]), args["sampleCount"], event.block, event.tx,
                args.get("epsilon", 0)))
            person(args["institution"])
        elif name == "ContributionScored":
            who = args["institution"]
            round_of(event)["scored"].append(Scored(who, args["score"], args["credit"], args["reputation"]))
            money["credited"] += args["credit"]
            books = person(who)
            books["credited"] += args["credit"]
            books["cumulative_score"] += max(args["score"], 0)
            books["rounds_scored"] += 1
            books["reputation_by_round"][args["round"]] = args["reputation"]
        elif name == "RoundFinalized":
            round_of(event).update(new_model_hash=Digest(args["newModelHash"]), reward=args["reward"],
                                   credited=args["credited"], participants=args["participants"], finalized=event)
        elif name in ("OutcomeAttested", "ScorerDissented"):
            kind = "attestations" if name == "OutcomeAttested" else "dissents"
            round_of(event)[kind].append(Attestation(args["scorer"], Digest(args["outcomeDigest"]), event.tx))
        elif name == "RoundLapsed":
            round_of(event)["lapsed"] = event
        elif name == "RewardClaimed":
            money["claimed"] += args["amount"]
            person(args["institution"])["claimed"] += args["amount"]
        elif name == "RevenuePaid":
            money["revenue_paid"] += args["amount"]
        elif name == "RevenueClaimed":
            money["revenue_claimed"] += args["amount"]
            person(args["institution"])["revenue_claimed"] += args["amount"]
    return BountyTrace(
        bounty_id=bounty_id,
        created=Created(
            sponsor=created["sponsor"], aggregator=created["aggregator"], token=created["token"],
            task_spec_hash=Digest(created["taskSpecHash"]), validation_set_hash=Digest(created["validationSetHash"]),
            rules_hash=Digest(created["rulesHash"]), num_rounds=created["numRounds"],
            commit_window=created["commitWindow"], deadline=created["deadline"],
            min_reputation=created["minReputation"]),
        timeline=timeline,
        rounds=tuple(RoundTrace(**{**r, **{k: tuple(r[k]) for k in _ROUND_LISTS}}) for _, r in sorted(rounds.items())),
        institutions={who: InstitutionBooks(address=who, name=names.get(who), **b) for who, b in people.items()},
        books=BountyBooks(funded=money["funded"], credited=money["credited"], refunded=money["refunded"],
                          claimed=money["claimed"], revenue_paid=money["revenue_paid"],
                          revenue_claimed=money["revenue_claimed"]),
    )
