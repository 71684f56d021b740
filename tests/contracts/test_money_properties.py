"""Stateful property test of the money invariant (DESIGN.md, "Invariants the tests must prove", 1. Money).

A hypothesis ``RuleBasedStateMachine`` drives one fresh embedded chain per example through random sequences of
institutions joining, leaving (and withdrawing their stake after the cooldown) and being slashed; sponsors
creating ETH and ERC-20 (TestToken) bounties and anyone topping them up; the aggregator opening rounds,
institutions committing, the aggregator finalizing with random signed scores (zero, negative, all non-positive,
up to ``MAX_ABS_SCORE``) for a random subset of the committers; claims; cancellations (before the first round,
after the deadline, or once the open round is past its commit window plus the bounty's recovery grace); refunds of completed bounties' remainders; revenue paid and claimed in ETH and in the token;
and time passing, often to just before or after a deadline. A shadow model in Python is fed from the receipts'
events (``ContributionScored``, ``RewardClaimed``...) and from real balance changes.

Most actions aim three times in four where they must succeed, and otherwise where the contract must refuse them:
then the transaction must revert with the error the contract documents for that case, mine nothing and change
nothing (a snapshot of what it would have changed, read before and after).

After every step, for every bounty, read from the chain:

* credited + refunded + escrowed == funded, escrowed >= 0, and the chain's books equal the shadow model's;
* per (bounty, institution): claimed + unclaimed == credited, and nobody received (by its ``RewardClaimed``
  events, and by its real balance) more than it was credited;
* at each finalize: nobody whose score is not positive is credited; a round with a positive score is credited
  exactly (but for floor-division dust, under one wei per positive scorer, carried to the next round and none in
  the last); a round without one (all zeros: its gain too small to tell the participants apart; or all
  non-positive) credits nothing and carries its whole reward to the rounds left, or after the last round to the
  sponsor's refund; reputation moves by the sign of each score in every round, paying or not;
* a bounty whose last round had a positive score holds nothing back (dust not stranded: the finalize checks
  every credit, the dust included, to the wei); any other completed bounty holds exactly its refundable
  remainder; a cancelled one holds nothing;
* revenue: claimed <= paid per (bounty, token), and each institution's claims <= its pro-rata share;
* the ledger's ETH balance == what the ETH bounties hold (funded - refunded - claimed) + stakes + slashed
  funds, exactly, and the revenue splitter's == ETH revenue not yet claimed, exactly (revenue and escrow never
  share a balance); likewise their token balances.

Run time: about a minute for 25 examples of up to 30 steps on the 2-core machine (``TestMoneyProperties``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fedcore.errors import ContractRevert
from ledger.chain import advance_time, connect, latest_timestamp
from ledger.client import ETH, BountyParams, BountyStatus, FedLedgerClient, RevenueSplitterClient
from ledger.deployment import deploy_fedledger
from tests.world import COOLDOWN, MIN_STAKE, deploy_token, h

MAX_ABS_SCORE = 10**36  # RoundLedger.MAX_ABS_SCORE
REP_ONE, REP_INITIAL, REP_ALPHA = 10_000, 5_000, 2_000
ETH_REPUTATION_FLOOR = 10**18  # token bounties have no floor: they move no reputation
N_INSTS = 4
MAX_BOUNTIES = 5  # in all, per example
MAX_ACTIVE = 2  # at once
ZERO32 = b"\x00" * 32
MAX_UINT = 2**256 - 1

ACTIVE, COMPLETED, CANCELLED = BountyStatus.ACTIVE, BountyStatus.COMPLETED, BountyStatus.CANCELLED

# -- strategies ----------------------------------------------------------------------------------------------
INDEX = st.integers(0, 11)  # an index into a list of candidates, modulo its length
FOCUS = st.sampled_from([True, True, True, False])  # aim where the action must succeed (else where it must fail)
AMOUNT = st.one_of(
    st.sampled_from([1, 2, 3, 7, 999, 10**18, 10**18 + 1, 10**21]),
    st.integers(1, 10**21),
)
SCORE = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 10**18, MAX_ABS_SCORE, MAX_ABS_SCORE - 1, -MAX_ABS_SCORE]),
    st.integers(-MAX_ABS_SCORE, MAX_ABS_SCORE),
    st.integers(-5, 10**6),
)
AMOUNT_OR_ZERO = st.integers(0, 5).flatmap(lambda k: AMOUNT if k else st.just(0))  # zero one time in six
STAKE = st.one_of(st.sampled_from([MIN_STAKE, 3 * MIN_STAKE + 1]), st.integers(MIN_STAKE, 10**19))
DEADLINE_IN = st.sampled_from([3_600, 86_400, 7 * 86_400])
ODD = st.sampled_from([False, False, False, True])
ACTIONS = (  # the weights of the actions, by repetition
    ["run_rounds"] * 4 + ["open_round"] + ["commit"] * 2 + ["finalize"] * 2
    + ["create_bounty"] * 2 + ["fund"] * 2 + ["cancel"] * 2 + ["abandon"] + ["refund_remainder"] + ["pay_revenue"] * 3
    + ["claim"] * 3 + ["claim_revenue"] * 4
    + ["join", "request_leave", "withdraw_stake", "slash", "withdraw_slashed"]
    + ["time_passes"] * 3
)


def some(items: list) -> st.SearchStrategy[list]:
    """A subset of ``items``: half the time all of them, else mostly a non-empty one, sometimes none."""
    if not items:
        return st.just([])
    choices = {"all": st.just(list(items)), "some": st.lists(st.sampled_from(items), min_size=1, unique=True), "none": st.just([])}
    return st.sampled_from(["all", "all", "some", "some", "some", "none"]).flatmap(choices.__getitem__)


@dataclass
class InstModel:
    registered: bool = False
    ever_joined: bool = False
    leave_requested_at: int = 0  # the contract keeps it after withdrawStake, until the next join
    stake: int = 0
    reputation: int = 0


@dataclass
class BountyModel:
    id: int
    sponsor: str
    token: str  # ETH or the TestToken's address
    num_rounds: int
    commit_window: int
    deadline: int
    min_reputation: int
    recovery_grace: int
    status: BountyStatus = ACTIVE
    funded: int = 0
    credited: int = 0
    refunded: int = 0
    rounds_opened: int = 0
    rounds_finalized: int = 0
    commit_deadline: int = 0  # of the latest opened round
    commits: dict[str, bytes] = field(default_factory=dict)  # of the latest opened round
    committers: set[str] = field(default_factory=set)  # everyone who ever committed: the only possible payees
    model_hash: bytes = b""  # the hash the next round must open with
    total_positive: int = 0
    last_round_positive: bool = False
    credit: dict[str, int] = field(default_factory=dict)  # summed ContributionScored credits
    claimed: dict[str, int] = field(default_factory=dict)  # summed RewardClaimed amounts
    received: dict[str, int] = field(default_factory=dict)  # summed real balance increases from claims
    cum_score: dict[str, int] = field(default_factory=dict)
    rev_paid: dict[str, int] = field(default_factory=dict)  # by revenue token
    rev_claimed: dict[str, dict[str, int]] = field(default_factory=dict)  # by revenue token, then institution

    @property
    def is_eth(self) -> bool:
        return self.token == ETH

    @property
    def escrowed(self) -> int:
        return self.funded - self.credited - self.refunded

    @property
    def reputation_floor(self) -> int:
        return ETH_REPUTATION_FLOOR if self.is_eth else 0

    @property
    def live(self) -> bool:
        """A round is open and not yet finalized."""
        return self.status == ACTIVE and self.rounds_opened > self.rounds_finalized

    @property
    def openable(self) -> bool:
        return self.status == ACTIVE and self.rounds_opened == self.rounds_finalized < self.num_rounds

    def unclaimed(self, who: str) -> int:
        return self.credit.get(who, 0) - self.claimed.get(who, 0)

    def revenue_due(self, token: str, who: str) -> int:
        if not self.total_positive:
            return 0
        share = self.rev_paid.get(token, 0) * self.cum_score.get(who, 0) // self.total_positive
        return share - self.rev_claimed.get(token, {}).get(who, 0)


class MoneyMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.w3 = connect("embedded")
        accounts = self.w3.eth.accounts
        self.gov, self.aggregator = accounts[0], accounts[2]
        self.sponsors = [accounts[1], accounts[3]]
        self.insts = list(accounts[4:4 + N_INSTS])
        self.others = [accounts[8], accounts[9]]  # funders, revenue payers, callers with no business
        deployment = deploy_fedledger(self.w3, self.gov, governance=self.gov, min_stake=MIN_STAKE, leave_cooldown=COOLDOWN,
                                      reputation_floor=ETH_REPUTATION_FLOOR)
        self.ledger = FedLedgerClient.from_deployment(self.w3, deployment)
        self.splitter = RevenueSplitterClient.from_deployment(self.w3, deployment)
        self.token = deploy_token(self.w3, "TestToken", self.gov)
        self.tokens = (ETH, self.token.address)
        self.token_ready: set[str] = set()
        self.bounties: dict[int, BountyModel] = {}
        self.inst: dict[str, InstModel] = {a: InstModel() for a in self.insts}
        self.slashed = 0
        self.serial = 0
        self._cache: tuple[int, dict] | None = None

    # -- helpers ---------------------------------------------------------------------------------------
    def _as(self, who: str) -> FedLedgerClient:
        return self.ledger.as_sender(who)

    def _revenue_as(self, who: str) -> RevenueSplitterClient:
        return self.splitter.as_sender(who)

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    @staticmethod
    def _choose(index: int, focus: bool, candidates: list, everything: list):
        """One of ``candidates`` (where the action must succeed) when ``focus``, else one of the others (where the
        contract must refuse it); any of ``everything`` when the chosen side is empty."""
        others = [x for x in everything if not any(x == c for c in candidates)]
        pool = (candidates if focus else others) or everything
        return pool[index % len(pool)]

    def _all_bounties(self) -> list[BountyModel]:
        return [self.bounties[i] for i in sorted(self.bounties)]

    def _can_commit(self, b: BountyModel, who: str) -> bool:
        m = self.inst[who]
        return (m.registered and not m.leave_requested_at and m.stake >= MIN_STAKE and m.reputation >= b.min_reputation
                and who not in b.commits)

    # Where each action must succeed now (the candidates of ``_choose``).
    def _active(self) -> list[BountyModel]:
        return [b for b in self._all_bounties() if b.status == ACTIVE]

    def _openable(self) -> list[BountyModel]:
        return [b for b in self._all_bounties() if b.openable and not self._after(b.deadline)]

    def _stalled(self, b: BountyModel) -> bool:
        """Its open round is past its commit window plus the bounty's recovery grace, and not finalized."""
        return b.live and self._after(b.commit_deadline + b.recovery_grace)

    def _cancellable(self) -> list[BountyModel]:
        """Past their deadline or stalled if any (whatever their rounds did), else not started."""
        active = self._active()
        return ([b for b in active if self._after(b.deadline) or self._stalled(b)]
                or [b for b in active if not b.rounds_opened])

    def _live(self) -> list[BountyModel]:
        return [b for b in self._all_bounties() if b.live]

    def _refundable(self) -> list[BountyModel]:
        return [b for b in self._all_bounties() if b.status == COMPLETED and b.escrowed]

    def _payable(self) -> list[BountyModel]:
        return [b for b in self._all_bounties() if b.status == COMPLETED and b.total_positive]

    def _owed(self) -> list[tuple[BountyModel, str]]:
        return [(b, a) for b in self._all_bounties() for a in self.insts if b.unclaimed(a)]

    def _due(self) -> list[tuple[BountyModel, str, str]]:
        return [(b, t, a) for b in self._payable() for t in self.tokens for a in self.insts if b.revenue_due(t, a)]

    def _next_timestamp(self) -> int:
        """The timestamp the next transaction runs at, exactly: eth-tester stamps the pending block when it mines
        the previous one (max(parent + 1, wall clock)), and both the gas estimate and the block use it."""
        return int(self.w3.eth.get_block("pending")["timestamp"])

    def _after(self, boundary: int) -> bool:
        """Whether the next transaction runs after ``boundary`` (block.timestamp > boundary)."""
        return self._next_timestamp() > boundary

    def _balance(self, who: str, token: str) -> int:
        if token == ETH:
            return self.w3.eth.get_balance(who)
        return self.token.balance_of(who)

    def _gas_of_last_tx(self, sender: str) -> int:
        block = self.w3.eth.get_block("latest")
        receipt = self.w3.eth.get_transaction_receipt(block["transactions"][-1])
        assert receipt["from"] == sender
        return receipt["gasUsed"] * receipt["effectiveGasPrice"]

    def _paying(self, who: str, token: str, fn):
        """Run ``fn`` (a transaction sent by ``who``); return (its result, what ``who``'s balance really gained)."""
        before = self._balance(who, token)
        result = fn()
        gained = self._balance(who, token) - before
        if token == ETH:
            gained += self._gas_of_last_tx(who)
        return result, gained

    def _check_institution(self, who: str) -> None:
        """The chain's record of an institution (stake, reputation, registration) equals the shadow's."""
        onchain, m = self.ledger.institution(who), self.inst[who]
        assert (onchain.stake, onchain.reputation, onchain.registered, onchain.leave_requested_at, onchain.ever_joined) == (
            m.stake, m.reputation, m.registered, m.leave_requested_at, m.ever_joined), who

    def _ensure_tokens(self, who: str) -> None:
        if who not in self.token_ready:
            self.token.as_sender(who).mint(who, 10**30)
            self.token.as_sender(who).approve(self.ledger.address, MAX_UINT)
            self.token.as_sender(who).approve(self.splitter.address, MAX_UINT)
            self.token_ready.add(who)

    def _succeed(self, label: str, fn):
        """Send ``fn``, which must succeed; return its result."""
        try:
            result = fn()
        except ContractRevert as exc:
            raise AssertionError(f"{label} reverted with {exc}, expected success") from None
        event(f"{label}: ok")
        return result

    def _snapshot(self, b: BountyModel | None, who: str | None) -> tuple:
        """What a refused transaction on bounty ``b`` by ``who`` would change if it went through, read from the
        chain: the block number and both contracts' ETH and token balances; the bounty's record (its books, status
        and rounds) and the caller's contribution to it; or the institution's record; or, for neither, the slashed
        funds. (The invariants read everything else after the step.)"""
        L = self.ledger
        snap = [self.w3.eth.block_number, self.w3.eth.get_balance(L.address), self.w3.eth.get_balance(self.splitter.address)]
        if self.token_ready:
            snap += [self.token.balance_of(L.address), self.token.balance_of(self.splitter.address)]
        if b is not None:
            snap.append(L.bounty(b.id))
            if who is not None:
                snap.append(L.contribution_of(b.id, who))
        elif who is not None:
            snap.append(L.institution(who))
        else:
            snap.append(L.slashed_balance())
        return tuple(snap)

    def _must_revert(self, label: str, name: str, fn, *, b: BountyModel | None = None, who: str | None = None) -> None:
        """Send ``fn``, which must revert with the custom error ``name`` and change nothing (nor mine anything)."""
        before = self._snapshot(b, who)
        try:
            fn()
        except ContractRevert as exc:
            event(f"{label}: {exc.name}")
            assert exc.name == name, f"{label} reverted with {exc}, expected {name}"
            assert self._snapshot(b, who) == before, f"{label}: the refused {name} changed state"
            return
        raise AssertionError(f"{label} succeeded, expected a revert with {name}")

    # -- the rules -------------------------------------------------------------------------------------
    # One rule, ``step``, draws each step's action from ACTIONS (weights by repetition), then the action draws its
    # own arguments. (With a rule per action, hypothesis's swarm testing switches a random share of the rules off
    # for a whole example, and about half the examples then move no money at all.) Most actions aim three times
    # in four ("focus") where they must succeed, else where the contract must refuse them; a false "caller ok"
    # sends them from someone without the right.

    @initialize(
        joined=st.sets(st.integers(0, N_INSTS - 1), min_size=2),
        stakes=st.lists(STAKE, min_size=N_INSTS, max_size=N_INSTS),
        in_token=st.booleans(),
        funding=AMOUNT,
        rounds=st.integers(1, 3),
        deadline_in=DEADLINE_IN,
    )
    def setup(self, joined, stakes, in_token, funding, rounds, deadline_in):
        """Some institutions join and a first bounty exists, so that every action has something to work on."""
        for i in sorted(joined):
            self._join(self.insts[i], stakes[i])
        self._create_bounty(0, in_token, funding, rounds, 600, deadline_in, 0, 3_600)

    @rule(action=st.sampled_from(ACTIONS), data=st.data())
    def step(self, action, data):
        getattr(self, f"_do_{action}")(data)

    def _do_run_rounds(self, data) -> None:
        """The aggregator runs one or more whole rounds of a bounty (up to its completion or not): it opens each
        (unless one is open), some of the eligible institutions commit, it finalizes."""
        candidates = self._live() + self._openable()
        if candidates:
            b = candidates[data.draw(INDEX, "bounty") % len(candidates)]
            self._run_rounds(b, data.draw(st.integers(1, b.num_rounds - b.rounds_finalized), "rounds"), data)

    def _run_rounds(self, b: BountyModel, rounds: int, data) -> None:
        for _ in range(rounds):
            if not (b.live or (b.openable and self._open(b, True, False))):
                return
            eligible = [a for a in self.insts if self._can_commit(b, a)]
            for who in data.draw(some(eligible), "committers"):
                self._commit(b, who, False)
            self._finalize(b, True, data)

    def _do_abandon(self, data) -> None:
        """The aggregator runs some rounds of a bounty but not all; its deadline comes (time runs to it, or one
        second past it); the sponsor cancels and takes back what is left, while the credits stay claimable."""
        candidates = [b for b in self._live() + self._openable() if b.num_rounds - b.rounds_finalized >= 2]
        if not candidates:
            return
        b = candidates[data.draw(INDEX, "bounty") % len(candidates)]
        self._run_rounds(b, data.draw(st.integers(1, b.num_rounds - b.rounds_finalized - 1), "rounds"), data)
        self._run_time_to(b.deadline + data.draw(st.sampled_from([0, 1, 1]), "offset"))
        self._cancel(b, True)

    def _do_open_round(self, data) -> None:
        """The aggregator opens a bounty's next round (odd: with the wrong model hash)."""
        b = self._choose(data.draw(INDEX, "bounty"), data.draw(FOCUS, "focus"), self._openable(), self._all_bounties())
        self._open(b, data.draw(FOCUS, "caller ok"), data.draw(ODD, "odd"))

    def _do_commit(self, data) -> None:
        """An institution commits to a bounty's open round (odd: a copy of another's hash, which finalize refuses)."""
        focus = data.draw(FOCUS, "focus")
        b = self._choose(data.draw(INDEX, "bounty"), focus, self._live(), self._all_bounties())
        who = self._choose(data.draw(INDEX, "institution"), focus, [a for a in self.insts if self._can_commit(b, a)], self.insts)
        self._commit(b, who, data.draw(ODD, "odd"))

    def _do_finalize(self, data) -> None:
        """The aggregator finalizes a bounty's open round."""
        b = self._choose(data.draw(INDEX, "bounty"), data.draw(FOCUS, "focus"), self._live(), self._all_bounties())
        self._finalize(b, data.draw(FOCUS, "caller ok"), data)

    def _do_create_bounty(self, data) -> None:
        """A sponsor publishes a bounty in ETH or the token, escrowing some funding (possibly none yet)."""
        if len(self.bounties) >= MAX_BOUNTIES or len(self._active()) >= MAX_ACTIVE:
            return
        self._create_bounty(
            data.draw(st.integers(0, 1), "sponsor"),
            data.draw(st.booleans(), "in token"),
            data.draw(AMOUNT_OR_ZERO, "funding"),
            data.draw(st.integers(1, 3), "rounds"),
            data.draw(st.sampled_from([120, 600, 3_600]), "commit window"),
            data.draw(DEADLINE_IN, "deadline in"),
            data.draw(st.sampled_from([0, 0, 0, 4_000, 5_000, 5_500]), "min reputation"),
            data.draw(st.sampled_from([1, 600, 3_600]), "recovery grace"),
        )

    def _do_fund(self, data) -> None:
        """Anyone tops up an active bounty."""
        b = self._choose(data.draw(INDEX, "bounty"), data.draw(FOCUS, "focus"), self._active(), self._all_bounties())
        funder = data.draw(st.sampled_from(self.sponsors + self.others), "funder")
        self._fund(b, funder, data.draw(AMOUNT_OR_ZERO, "amount"))

    def _do_cancel(self, data) -> None:
        """The sponsor cancels a bounty and is refunded: before its first round, or after its deadline. Half the
        time, time first runs to the deadline of a bounty under way, or one second past it."""
        under_way = [b for b in self._active() if b.rounds_opened]
        if under_way and data.draw(st.booleans(), "at the deadline"):
            b = under_way[data.draw(INDEX, "bounty") % len(under_way)]
            self._run_time_to(b.deadline + data.draw(st.sampled_from([0, 1, 1]), "offset"))
        else:
            b = self._choose(data.draw(INDEX, "bounty"), data.draw(FOCUS, "focus"), self._cancellable(), self._all_bounties())
        self._cancel(b, data.draw(FOCUS, "caller ok"))

    def _do_refund_remainder(self, data) -> None:
        """The sponsor takes back what a completed bounty could not credit."""
        b = self._choose(data.draw(INDEX, "bounty"), data.draw(FOCUS, "focus"), self._refundable(), self._all_bounties())
        self._refund_remainder(b, data.draw(FOCUS, "caller ok"))

    def _do_pay_revenue(self, data) -> None:
        """Anyone pays revenue, in ETH or the token, into a completed bounty (once there is one)."""
        if not self._payable():
            return
        b = self._choose(data.draw(INDEX, "bounty"), data.draw(FOCUS, "focus"), self._payable(), self._all_bounties())
        payer = data.draw(st.sampled_from([self.others[0], self.others[1], b.sponsor, self.insts[0]]), "payer")
        token = data.draw(st.sampled_from(self.tokens), "token")
        self._pay_revenue(b, payer, token, data.draw(AMOUNT_OR_ZERO, "amount"))

    def _do_claim(self, data) -> None:
        """An institution claims its reward; else (no focus) someone owed nothing there now (claimed already,
        never credited, or an outsider) tries."""
        everything = [(b, a) for b in self._all_bounties() if b.credit for a in sorted(b.committers) + self.others[1:]]
        if not everything:
            return
        b, who = self._choose(data.draw(INDEX, "claim"), data.draw(FOCUS, "focus"), self._owed(), everything)
        self._claim(b, who)
        if data.draw(ODD, "claim again"):  # nobody is paid twice
            self._claim(b, who)

    def _do_claim_revenue(self, data) -> None:
        """An institution claims its share of revenue paid into a bounty in a token; else (no focus) a contributor
        with nothing due there now (it claimed already) or an outsider tries."""
        everything = [(b, t, a) for b in self._all_bounties() for t in sorted(b.rev_paid)
                      for a in sorted(b.cum_score) + self.others[1:]]
        if not everything:
            return
        b, token, who = self._choose(data.draw(INDEX, "claim"), data.draw(FOCUS, "focus"), self._due(), everything)
        self._claim_revenue(b, token, who)
        if data.draw(ODD, "claim again"):  # nobody is paid twice
            self._claim_revenue(b, token, who)

    def _do_join(self, data) -> None:
        unregistered = [a for a in self.insts if not self.inst[a].registered]
        who = self._choose(data.draw(INDEX, "institution"), data.draw(FOCUS, "focus"), unregistered, self.insts)
        self._join(who, data.draw(st.one_of(STAKE, st.just(MIN_STAKE - 1)), "stake"))

    def _do_request_leave(self, data) -> None:
        candidates = [a for a in self.insts if self.inst[a].registered and not self.inst[a].leave_requested_at]
        self._request_leave(self._choose(data.draw(INDEX, "institution"), data.draw(FOCUS, "focus"), candidates, self.insts))

    def _do_withdraw_stake(self, data) -> None:
        candidates = [a for a in self.insts if self.inst[a].registered and self.inst[a].leave_requested_at]
        self._withdraw_stake(self._choose(data.draw(INDEX, "institution"), data.draw(FOCUS, "focus"), candidates, self.insts))

    def _do_slash(self, data) -> None:
        """Governance slashes tenths/10 of a stake (11: one wei more than it)."""
        registered = [a for a in self.insts if self.inst[a].registered]
        who = self._choose(data.draw(INDEX, "institution"), data.draw(FOCUS, "focus"), registered, self.insts)
        self._slash(who, data.draw(st.sampled_from([0, 1, 5, 10, 11]), "tenths"), data.draw(FOCUS, "caller ok"))

    def _do_withdraw_slashed(self, data) -> None:
        self._withdraw_slashed(data.draw(FOCUS, "caller ok"))

    def _do_time_passes(self, data) -> None:
        """Time passes: a fixed step, or up to a boundary, so that the next transaction runs ``offset`` seconds after
        the last second at which the earlier rule still held (a round's commit deadline, a bounty's deadline, the
        second before a leave cooldown ends)."""
        jump = data.draw(st.sampled_from(["second", "hour", "commit window", "commit window", "deadline", "deadline",
                                          "cooldown", "recovery grace"]), "jump")
        boundaries = {
            "commit window": [b.commit_deadline for b in self._live()],
            "recovery grace": [b.commit_deadline + b.recovery_grace for b in self._live()],
            "deadline": [b.deadline for b in self._active() if b.rounds_opened] or [b.deadline for b in self._active()],
            "cooldown": [m.leave_requested_at + COOLDOWN - 1 for m in self.inst.values() if m.registered and m.leave_requested_at],
        }.get(jump)
        if boundaries:
            boundary = boundaries[data.draw(INDEX, "which") % len(boundaries)]
            self._run_time_to(boundary + data.draw(st.sampled_from([0, 1, 5]), "offset"))
        else:
            self._run_time_to(self._next_timestamp() + {"second": 1, "hour": 3_600}.get(jump, 1))

    def _run_time_to(self, timestamp: int) -> None:
        """Advance the chain so that the next transaction runs at ``timestamp`` (if that is still ahead)."""
        if timestamp <= self._next_timestamp():
            return
        before, block = latest_timestamp(self.w3), self.w3.eth.block_number
        advance_time(self.w3, timestamp - 1 - before)  # mines an empty block stamped timestamp - 1
        assert self.w3.eth.block_number == block + 1 and not self.w3.eth.get_block("latest")["transactions"]
        if self._cache is not None and self._cache[0] == block:  # an empty block changes no state
            self._cache = (block + 1, self._cache[1])
        assert self._next_timestamp() >= timestamp  # (later only if the wall clock is ahead of the chain)

    # -- institutions ----------------------------------------------------------------------------------
    def _join(self, who: str, stake: int) -> None:
        m = self.inst[who]
        fn = lambda: self._as(who).join(f"hospital {who[-4:]}", "ipfs://meta", stake=stake)  # noqa: E731
        if m.registered:
            return self._must_revert("join", "AlreadyRegistered", fn, who=who)
        if stake < MIN_STAKE:
            return self._must_revert("join", "StakeTooLow", fn, who=who)
        self._succeed("join", fn)
        m.registered, m.leave_requested_at, m.stake = True, 0, stake
        if not m.ever_joined:
            m.ever_joined, m.reputation = True, REP_INITIAL
        self._check_institution(who)

    def _request_leave(self, who: str) -> None:
        m = self.inst[who]
        fn = self._as(who).request_leave
        if not m.registered:
            return self._must_revert("request_leave", "NotRegistered", fn, who=who)
        if m.leave_requested_at:
            return self._must_revert("request_leave", "LeaveAlreadyRequested", fn, who=who)
        self._succeed("request_leave", fn)
        m.leave_requested_at = latest_timestamp(self.w3)
        self._check_institution(who)

    def _withdraw_stake(self, who: str) -> None:
        m = self.inst[who]
        fn = lambda: self._paying(who, ETH, self._as(who).withdraw_stake)  # noqa: E731
        if not m.registered:
            return self._must_revert("withdraw_stake", "NotRegistered", fn, who=who)
        if not m.leave_requested_at:
            return self._must_revert("withdraw_stake", "LeaveNotRequested", fn, who=who)
        if not self._after(m.leave_requested_at + COOLDOWN - 1):  # allowed from requested + cooldown on
            return self._must_revert("withdraw_stake", "CooldownNotOver", fn, who=who)
        _, gained = self._succeed("withdraw_stake", fn)
        assert gained == m.stake, "the withdrawn amount is not the stake held"
        m.registered, m.stake = False, 0
        self._check_institution(who)

    def _slash(self, who: str, tenths: int, by_governance: bool) -> None:
        m = self.inst[who]
        amount = m.stake * min(tenths, 10) // 10 + (1 if tenths > 10 else 0)
        caller = self.gov if by_governance else self.others[0]
        fn = lambda: self._as(caller).slash(who, amount, h("evidence"))  # noqa: E731
        if not by_governance:
            return self._must_revert("slash", "NotGovernance", fn, who=who)
        if not m.registered:
            return self._must_revert("slash", "NotRegistered", fn, who=who)
        if amount > m.stake:
            return self._must_revert("slash", "SlashExceedsStake", fn, who=who)
        self._succeed("slash", fn)
        m.stake -= amount
        self.slashed += amount
        self._check_institution(who)

    def _withdraw_slashed(self, by_governance: bool) -> None:
        caller, to = (self.gov if by_governance else self.others[0]), self.others[1]
        fn = lambda: self._as(caller).withdraw_slashed(to)  # noqa: E731
        if not by_governance:
            return self._must_revert("withdraw_slashed", "NotGovernance", fn)
        if self.slashed == 0:
            return self._must_revert("withdraw_slashed", "NothingToWithdraw", fn)
        before = self._balance(to, ETH)
        self._succeed("withdraw_slashed", fn)
        assert self._balance(to, ETH) - before == self.slashed
        self.slashed = 0

    # -- money in --------------------------------------------------------------------------------------
    def _create_bounty(self, s: int, in_token: bool, funding: int, rounds: int, window: int, deadline_in: int,
                       min_rep: int, grace: int) -> None:
        """A sponsor publishes a bounty in ETH or the token, escrowing ``funding`` (possibly nothing yet)."""
        sponsor = self.sponsors[s]
        token = self.token.address if in_token else ETH
        if in_token:
            self._ensure_tokens(sponsor)
        n = self._next()
        params = BountyParams(
            task_spec_hash=h(f"task {n}"),
            validation_set_hash=h(f"validation {n}"),
            rules_hash=h(f"rules {n}"),
            aggregator=self.aggregator,
            num_rounds=rounds,
            commit_window=window,
            deadline=latest_timestamp(self.w3) + deadline_in,
            min_reputation=min_rep,
            token=token,
            recovery_grace=grace,
        )
        before = self._balance(self.ledger.address, token)
        bounty_id = self._succeed("create_bounty", lambda: self._as(sponsor).create_bounty(params, funding))
        assert bounty_id == len(self.bounties) + 1 == self.ledger.bounty_count()
        assert self._balance(self.ledger.address, token) - before == funding
        self.bounties[bounty_id] = BountyModel(
            id=bounty_id, sponsor=sponsor, token=token, num_rounds=rounds, commit_window=window,
            deadline=params.deadline, min_reputation=min_rep, recovery_grace=grace, funded=funding, model_hash=h(f"genesis {bounty_id}"),
        )

    def _fund(self, b: BountyModel, funder: str, amount: int) -> None:
        if not b.is_eth:
            self._ensure_tokens(funder)
        fn = lambda: self._as(funder).fund_bounty(b.id, amount)  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("fund", "BountyNotActive", fn, b=b)
        if amount == 0:
            return self._must_revert("fund", "ZeroAmount", fn, b=b)
        before = self._balance(self.ledger.address, b.token)
        self._succeed("fund", fn)
        assert self._balance(self.ledger.address, b.token) - before == amount
        b.funded += amount

    def _cancel(self, b: BountyModel, by_sponsor: bool) -> None:
        caller = b.sponsor if by_sponsor else self.others[0]
        fn = lambda: self._paying(caller, b.token, lambda: self._as(caller).cancel_bounty(b.id))  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("cancel", "BountyNotActive", fn, b=b)
        if not by_sponsor:
            return self._must_revert("cancel", "NotSponsor", fn, b=b)
        # allowed before the first round, after the deadline, or when the open round is stalled
        if b.rounds_opened and not self._after(b.deadline) and not self._stalled(b):
            return self._must_revert("cancel", "CancelNotAllowed", fn, b=b)
        receipt, gained = self._succeed("cancel", fn)
        if b.rounds_opened and not self._after(b.deadline):
            event("cancel: ok, a stalled round recovered")
        if b.credited:
            event("cancel: ok, after credits")
        refund = b.escrowed
        refunded = self.ledger.events(receipt, "BountyCancelled")[0]["refunded"]
        assert refunded == refund, f"cancel refunded {refunded}, the escrow was {refund}"
        assert gained == refund, "the sponsor's balance did not rise by the refund"
        b.refunded += refund
        b.status = CANCELLED

    def _refund_remainder(self, b: BountyModel, by_sponsor: bool) -> None:
        caller = b.sponsor if by_sponsor else self.others[0]
        fn = lambda: self._paying(caller, b.token, lambda: self._as(caller).refund_remainder(b.id))  # noqa: E731
        if b.status != COMPLETED:
            return self._must_revert("refund_remainder", "BountyNotCompleted", fn, b=b)
        if not by_sponsor:
            return self._must_revert("refund_remainder", "NotSponsor", fn, b=b)
        if b.escrowed == 0:
            return self._must_revert("refund_remainder", "NothingToRefund", fn, b=b)
        receipt, gained = self._succeed("refund_remainder", fn)
        refunded = self.ledger.events(receipt, "RemainderRefunded")[0]["amount"]
        assert refunded == b.escrowed == gained, f"refunded {refunded} (balance +{gained}), the remainder was {b.escrowed}"
        b.refunded += gained
        assert b.escrowed == 0

    def _pay_revenue(self, b: BountyModel, payer: str, token: str, amount: int) -> None:
        if token != ETH:
            self._ensure_tokens(payer)
        fn = lambda: self._revenue_as(payer).pay_revenue(b.id, amount, token)  # noqa: E731
        if b.status != COMPLETED:
            return self._must_revert("pay_revenue", "BountyNotCompleted", fn, b=b)
        if b.total_positive == 0:
            return self._must_revert("pay_revenue", "NoContributors", fn, b=b)
        if amount == 0:
            return self._must_revert("pay_revenue", "ZeroAmount", fn, b=b)
        before = self._balance(self.splitter.address, token)
        self._succeed("pay_revenue", fn)
        assert self._balance(self.splitter.address, token) - before == amount
        b.rev_paid[token] = b.rev_paid.get(token, 0) + amount

    # -- rounds ----------------------------------------------------------------------------------------
    def _open(self, b: BountyModel, by_aggregator: bool, wrong_hash: bool) -> bool:
        caller = self.aggregator if by_aggregator else b.sponsor
        wrong_hash = wrong_hash and b.rounds_opened > 0
        model = h("not the previous model") if wrong_hash else b.model_hash
        fn = lambda: self._as(caller).open_round(b.id, model)  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("open_round", "BountyNotActive", fn, b=b)
        if not by_aggregator:
            return self._must_revert("open_round", "NotAggregator", fn, b=b)
        if b.rounds_opened != b.rounds_finalized:
            return self._must_revert("open_round", "PreviousRoundOpen", fn, b=b)
        if b.rounds_opened == b.num_rounds:
            return self._must_revert("open_round", "AllRoundsOpened", fn, b=b)
        if self._after(b.deadline):
            return self._must_revert("open_round", "DeadlinePassed", fn, b=b)
        if wrong_hash:
            return self._must_revert("open_round", "ModelHashMismatch", fn, b=b)
        round_ = self._succeed("open_round", fn)
        assert round_ == b.rounds_opened + 1
        r = self.ledger.round(b.id, round_)
        assert r.global_model_hash == b.model_hash and r.opened_at <= b.deadline
        assert r.commit_deadline == r.opened_at + b.commit_window
        b.rounds_opened = round_
        b.commit_deadline = r.commit_deadline
        b.commits = {}
        return True

    def _commit(self, b: BountyModel, who: str, copy: bool) -> None:
        """Commit an update hash (``copy``: the same hash as another committer's, which finalize must refuse)."""
        m = self.inst[who]
        round_ = max(b.rounds_opened, 1)
        digest = next(iter(b.commits.values())) if copy and b.commits else h(f"update {self._next()}")
        fn = lambda: self._as(who).commit_update(b.id, round_, digest, 100)  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("commit", "BountyNotActive", fn, b=b, who=who)
        if b.rounds_opened == 0:
            return self._must_revert("commit", "RoundNotOpen", fn, b=b, who=who)
        if b.rounds_finalized == b.rounds_opened:
            return self._must_revert("commit", "RoundClosed", fn, b=b, who=who)
        if self._after(b.commit_deadline):
            return self._must_revert("commit", "RoundClosed", fn, b=b, who=who)
        if not m.registered or m.leave_requested_at:
            return self._must_revert("commit", "NotRegistered", fn, b=b, who=who)
        if m.stake < MIN_STAKE:
            return self._must_revert("commit", "StakeBelowMinimum", fn, b=b, who=who)
        if m.reputation < b.min_reputation:
            return self._must_revert("commit", "NotEligible", fn, b=b, who=who)
        if who in b.commits:
            return self._must_revert("commit", "AlreadyCommitted", fn, b=b, who=who)
        self._succeed("commit", fn)
        assert self.ledger.commitment_of(b.id, round_, who) == digest
        b.commits[who] = digest
        b.committers.add(who)

    def _finalize(self, b: BountyModel, by_aggregator: bool, data) -> None:
        caller = self.aggregator if by_aggregator else b.sponsor
        round_ = max(b.rounds_opened, 1)
        new_model = h(f"model {b.id}/{round_}/{self._next()}")
        if b.status != ACTIVE or not by_aggregator or not b.live:
            fn = lambda: self._as(caller).finalize_round(b.id, round_, new_model, {})  # noqa: E731
            if b.status != ACTIVE:
                return self._must_revert("finalize", "BountyNotActive", fn, b=b)
            if not by_aggregator:
                return self._must_revert("finalize", "NotAggregator", fn, b=b)
            return self._must_revert("finalize", "RoundNotOpen" if b.rounds_opened == 0 else "RoundClosed", fn, b=b)

        committed = sorted(b.commits)
        participants = data.draw(some(committed), "participants")
        mode = data.draw(st.sampled_from(["mixed", "positive", "positive", "positive", "nonpositive", "zeros", "huge", "tiny",
                                          "fault"]), "mode")
        if mode == "zeros":  # a round whose gain was too small to tell the participants apart
            scores = [0] * len(participants)
        elif mode == "huge":
            scores = [data.draw(st.sampled_from([MAX_ABS_SCORE, MAX_ABS_SCORE - 1, -MAX_ABS_SCORE, 1])) for _ in participants]
        elif mode == "tiny":
            scores = [data.draw(st.integers(-1, 3)) for _ in participants]
        else:
            scores = [data.draw(SCORE) for _ in participants]
            if mode == "nonpositive":
                scores = [-abs(s) for s in scores]
            elif mode == "positive":
                scores = [min(abs(s) + 1, MAX_ABS_SCORE) for s in scores]
        by_address = dict(zip(participants, scores))
        if mode == "fault":  # one more entry that the contract must refuse
            outsiders = [a for a in self.insts if a not in b.commits]
            kind = data.draw(st.sampled_from(["out of range", "not committed"] if outsiders else ["out of range"]))
            if kind == "not committed":
                by_address[data.draw(st.sampled_from(outsiders))] = data.draw(SCORE)
            elif participants:
                victim = data.draw(st.sampled_from(participants))
                by_address[victim] = data.draw(st.sampled_from([MAX_ABS_SCORE + 1, -MAX_ABS_SCORE - 1, 2**255 - 1]))

        # The contract's checks, in its order, over the participants by ascending committed hash (the client's order).
        ordered = sorted(by_address, key=lambda a: b.commits.get(a, ZERO32))
        error, previous = None, ZERO32
        for a in ordered:
            digest = b.commits.get(a, ZERO32)
            if digest == ZERO32:
                error = "NotCommitted"
            elif digest == previous:
                error = "DuplicateUpdateHash"
            elif abs(by_address[a]) > MAX_ABS_SCORE:
                error = "ScoreOutOfRange"
            if error:
                break
            previous = digest
        fn = lambda: self._as(caller).finalize_round(b.id, round_, new_model, by_address)  # noqa: E731
        if error:
            return self._must_revert("finalize", error, fn, b=b)

        # What it must credit: reward = escrow / rounds left, split pro rata to the positive scores (floor), and in
        # the last round the dust to the first best scorer.
        rounds_left = b.num_rounds - b.rounds_finalized
        reward = b.escrowed // rounds_left
        positive_total = sum(s for s in by_address.values() if s > 0)
        best, best_index = 0, 0
        for index, a in enumerate(ordered):
            if by_address[a] > best:
                best, best_index = by_address[a], index
        expected = {a: (reward * by_address[a] // positive_total if by_address[a] > 0 else 0) for a in ordered}
        if rounds_left == 1 and positive_total:
            dust = reward - sum(expected.values())
            expected[ordered[best_index]] += dust
            if dust:
                event("finalize: dust to the best scorer")

        receipt = self._succeed("finalize", fn)
        event(f"finalize: {'no participant' if not ordered else 'no positive score' if not positive_total else 'credited'}"
              f"{' (last round)' if rounds_left == 1 else ''}")
        scored = self.ledger.events(receipt, "ContributionScored")
        assert [e["institution"] for e in scored] == ordered
        for e in scored:
            a, score = e["institution"], by_address[e["institution"]]
            assert e["score"] == score and e["round"] == round_ and e["bountyId"] == b.id
            assert e["credit"] == expected[a], f"credit {e['credit']} != expected {expected[a]}"
            assert e["credit"] == 0 or score > 0, "credited a participant whose score is not positive"
            m = self.inst[a]
            # Reliability: towards 10_000 for a positive score, 0 for a negative one, in every round (one that pays
            # nobody still judges harm); a zero score moves nothing.
            floor = b.reputation_floor
            alpha = REP_ALPHA * min(reward, floor) // floor if floor else 0
            if score and alpha:
                target = REP_ONE if score > 0 else 0
                step = abs(target - m.reputation) * alpha // REP_ONE
                m.reputation += step if target >= m.reputation else -step
            event(f"finalize: reputation moved {'fully' if alpha == REP_ALPHA else 'partly' if alpha else 'not at all'}")
            assert e["reputation"] == m.reputation
            self._check_institution(a)
        credited = sum(e["credit"] for e in scored)
        (fin,) = self.ledger.events(receipt, "RoundFinalized")
        assert fin["reward"] == reward and fin["credited"] == credited and fin["participants"] == len(ordered)
        assert credited <= reward <= b.escrowed
        # Each round is credited exactly (up to the floor division's dust: under one wei per positive scorer, carried
        # to the next round, and none in the last) or, with no positive score, carried whole.
        carried = reward - credited
        if positive_total:
            assert carried < sum(1 for s in by_address.values() if s > 0) and (rounds_left > 1 or carried == 0)
        else:
            assert credited == 0
            event(f"finalize: round carried{' (last round: refundable)' if rounds_left == 1 else ''}")
        for e in scored:  # the shadow model takes the credits from the events
            a = e["institution"]
            b.credit[a] = b.credit.get(a, 0) + e["credit"]
            if e["score"] > 0:
                b.cum_score[a] = b.cum_score.get(a, 0) + e["score"]
        b.credited += credited
        b.total_positive += positive_total
        b.rounds_finalized += 1
        b.model_hash = new_model
        completed = self.ledger.events(receipt, "BountyCompleted")
        if rounds_left == 1:
            b.status = COMPLETED
            b.last_round_positive = positive_total > 0
            (done,) = completed
            assert done["totalPositiveScore"] == b.total_positive and done["remainder"] == b.escrowed
            if positive_total:
                assert b.escrowed == 0, "dust stranded after the last round"
        else:
            assert not completed

    # -- money out -------------------------------------------------------------------------------------
    def _claim(self, b: BountyModel, who: str) -> None:
        owed = b.unclaimed(who)
        fn = lambda: self._paying(who, b.token, lambda: self._as(who).claim(b.id))  # noqa: E731
        if owed == 0:
            return self._must_revert("claim", "NothingToClaim", fn, b=b, who=who)
        amount, gained = self._succeed("claim", fn)
        assert amount == owed, f"claim paid {amount}, {owed} was owed"
        b.claimed[who] = b.claimed.get(who, 0) + amount
        b.received[who] = b.received.get(who, 0) + gained

    def _claim_revenue(self, b: BountyModel, token: str, who: str) -> None:
        owed = b.revenue_due(token, who)
        fn = lambda: self._paying(who, token, lambda: self._revenue_as(who).claim_revenue(b.id, token))  # noqa: E731
        if owed == 0:
            return self._must_revert("claim_revenue", "NothingDue", fn, b=b, who=who)
        amount, gained = self._succeed("claim_revenue", fn)
        assert amount == gained == owed, f"revenue claim paid {amount} (balance +{gained}), {owed} was due"
        claimed = b.rev_claimed.setdefault(token, {})
        claimed[who] = claimed.get(who, 0) + amount

    # -- invariants ------------------------------------------------------------------------------------
    def _chain(self) -> dict:
        """Everything the invariants read, from the chain: read again whenever a block was mined since the last
        read (the state cannot change otherwise; the invariants share one read)."""
        block = self.w3.eth.block_number
        if self._cache is not None and self._cache[0] == block:
            return self._cache[1]
        L, S = self.ledger, self.splitter
        state = {
            "eth": self.w3.eth.get_balance(L.address),
            "splitter eth": self.w3.eth.get_balance(S.address),
            # Nothing can move the token into or out of either contract before some account holds it.
            "tok": self.token.balance_of(L.address) if self.token_ready else 0,
            "splitter tok": self.token.balance_of(S.address) if self.token_ready else 0,
            "slashed": L.slashed_balance(),
            "bounties": {},
        }
        for bid, b in self.bounties.items():
            onchain = L.bounty(bid)
            # Only committers can ever be credited; the invariants check that they account for all the credit.
            contrib = {a: L.contribution_of(bid, a) for a in sorted(b.committers)}
            revenue = {}
            if b.rev_paid:  # from the first payment on (payRevenue is the only way in)
                revenue = {t: (S.revenue_total(bid, t), S.revenue_released(bid, t)) for t in self.tokens}
            state["bounties"][bid] = (onchain, L.escrow_of(bid), contrib, revenue)
        self._cache = (block, state)
        return state

    @invariant()
    def books_balance_per_bounty(self):
        state = self._chain()
        for bid, b in self.bounties.items():
            onchain, escrow, _, _ = state["bounties"][bid]
            assert escrow >= 0, bid
            assert onchain.credited + onchain.refunded + escrow == onchain.funded, f"bounty {bid}: books do not balance"
            assert onchain.escrowed == escrow, f"bounty {bid}: escrowOf {escrow} != funded - credited - refunded"
            books, shadow = (onchain.funded, onchain.credited, onchain.refunded), (b.funded, b.credited, b.refunded)
            assert books == shadow, f"bounty {bid}: (funded, credited, refunded) {books} on chain, {shadow} expected"
            progress = (onchain.status, onchain.rounds_opened, onchain.rounds_finalized)
            assert progress == (b.status, b.rounds_opened, b.rounds_finalized), f"bounty {bid}: {progress}"
            assert onchain.credited == sum(b.credit.values()), f"bounty {bid}: credited != the sum of its credits"

    @invariant()
    def nobody_paid_more_than_credited(self):
        state = self._chain()
        for bid, b in self.bounties.items():
            onchain, _, contrib, _ = state["bounties"][bid]
            assert set(b.credit) <= b.committers and set(b.claimed) <= set(b.credit)
            for a, (unclaimed, cumulative) in contrib.items():
                credited, claimed = b.credit.get(a, 0), b.claimed.get(a, 0)
                assert claimed <= credited, f"{a} claimed {claimed} of bounty {bid}, credited only {credited}"
                assert b.received.get(a, 0) == claimed, f"{a}'s balance rose by other than its claims"
                assert claimed + unclaimed == credited, f"bounty {bid}, {a}: claimed + unclaimed != credited"
                assert cumulative == b.cum_score.get(a, 0), f"bounty {bid}, {a}: cumulative score {cumulative}"
            # The committers hold all the credit and all the score: nobody else can be owed anything.
            assert sum(b.claimed.get(a, 0) + c[0] for a, c in contrib.items()) == onchain.credited
            assert sum(c[1] for c in contrib.values()) == onchain.total_positive_score == b.total_positive, bid

    @invariant()
    def no_stranded_dust(self):
        state = self._chain()
        for bid, b in self.bounties.items():
            _, escrow, _, _ = state["bounties"][bid]
            if b.status == CANCELLED:
                assert escrow == 0, f"cancelled bounty {bid} still holds {escrow}"
            elif b.status == COMPLETED and b.last_round_positive:
                assert escrow == 0, f"bounty {bid} completed with a positive score but strands {escrow}"

    @invariant()
    def revenue_within_shares(self):
        state = self._chain()
        for bid, b in self.bounties.items():
            onchain, _, contrib, revenue = state["bounties"][bid]
            if not revenue:
                assert not b.rev_paid and not b.rev_claimed
                continue
            for t in self.tokens:
                total, released = revenue[t]
                claimed = b.rev_claimed.get(t, {})
                assert total == b.rev_paid.get(t, 0), f"bounty {bid}: revenue total {total} in {t}"
                assert released == sum(claimed.values()) <= total, f"bounty {bid}: more revenue claimed than paid"
                for a, amount in claimed.items():
                    share = total * contrib[a][1] // onchain.total_positive_score
                    assert amount <= share, f"{a} claimed {amount} of bounty {bid}'s revenue, its share is {share}"

    @invariant()
    def contract_balances_are_exact(self):
        state = self._chain()
        # Stakes only change by join, withdrawStake and slash, whose rules compare each record with the chain.
        stakes = sum(m.stake for m in self.inst.values())
        assert state["slashed"] == self.slashed, f"slashed balance {state['slashed']}, {self.slashed} expected"
        escrow, revenue_held = {ETH: 0, self.token.address: 0}, {ETH: 0, self.token.address: 0}
        for bid, b in self.bounties.items():
            onchain, _, _, revenue = state["bounties"][bid]
            escrow[b.token] += onchain.funded - onchain.refunded - sum(b.claimed.values())
            for t, (total, released) in revenue.items():
                revenue_held[t] += total - released
        assert state["eth"] == escrow[ETH] + stakes + state["slashed"], "the ledger's ETH balance leaks"
        assert state["tok"] == escrow[self.token.address], "the ledger's token balance leaks"
        assert state["splitter eth"] == revenue_held[ETH], "the revenue splitter's ETH balance leaks"
        assert state["splitter tok"] == revenue_held[self.token.address], "the revenue splitter's token balance leaks"


class TestMoneyProperties(MoneyMachine.TestCase):
    """``MoneyMachine.TestCase``, run in a fresh thread.

    CPython 3.11 keeps Python frames in 16 KiB chunks and unmaps a chunk as soon as the frame that opened it
    returns; at the stack depth pytest runs tests at, a chunk boundary falls inside the EVM's hot loop, and the
    same run spends about as long in mmap/munmap as in Python (checked with ``strace -c``: 1.5 million pairs for
    five examples). A new thread starts from an empty frame stack, the same however pytest is invoked.
    """

    settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )

    def runTest(self):
        failure: list[BaseException] = []

        def run() -> None:
            try:
                super(TestMoneyProperties, self).runTest()
            except BaseException as exc:  # noqa: BLE001 -- re-raised below, in the test's own thread
                failure.append(exc)

        worker = threading.Thread(target=run, name="money-properties")
        worker.start()
        worker.join()
        if failure:
            raise failure[0]

    runTest.is_hypothesis_test = True
    runTest._hypothesis_state_machine_class = MoneyMachine
