"""Stateful property test of the money invariant (DESIGN.md, "Invariants the tests must prove", 1. Money).

A hypothesis ``RuleBasedStateMachine`` drives one fresh embedded chain per example through random sequences of
institutions joining, leaving and being slashed; sponsors creating ETH and ERC-20 bounties and anyone topping
them up; the aggregator opening rounds, institutions committing, the aggregator finalizing with random signed
scores (zero, negative, all non-positive, up to ``MAX_ABS_SCORE``); claims; cancellations (before the first
round, or after the deadline); refunds of completed bounties' remainders; revenue payments and claims; and time
travel. It keeps a shadow model in Python, fed from the receipts' events and from real balance changes.

A rule whose precondition fails in the contract is attempted anyway and must revert with the error the contract
documents for it, changing no state; the few that would only waste a step are guarded by ``precondition``.

After every step, for every bounty, read from the chain:

* credited + refunded + escrowed == funded, escrowed >= 0, and the chain's books equal the shadow model's;
* per (bounty, institution): claimed + unclaimed == credited, and nobody received (by events or by balance)
  more than it was credited;
* a bounty completed with a positive score in its last round holds nothing back (dust not stranded); any other
  completed bounty holds exactly its refundable remainder; a cancelled one holds nothing;
* revenue: claimed <= paid per (bounty, token), and each institution's claims <= its pro-rata share;
* the contract's ETH and token balances equal what the books say they hold, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fedcore.errors import ContractRevert
from ledger.chain import advance_time, connect, latest_timestamp
from ledger.client import ETH, BountyParams, BountyStatus, FedLedgerClient
from ledger.deployment import deploy_fedledger
from tests.world import COOLDOWN, MIN_STAKE, deploy_token, h

MAX_ABS_SCORE = 10**36  # RoundLedger.MAX_ABS_SCORE
REP_ONE, REP_INITIAL, REP_ALPHA = 10_000, 5_000, 2_000
N_INSTS = 4
MAX_BOUNTIES = 4
SLACK = 2  # seconds either side of a time boundary where both outcomes are accepted
ZERO32 = b"\x00" * 32
MAX_UINT = 2**256 - 1

ACTIVE, COMPLETED, CANCELLED = BountyStatus.ACTIVE, BountyStatus.COMPLETED, BountyStatus.CANCELLED

# -- strategies ----------------------------------------------------------------------------------------------
INST = st.integers(0, N_INSTS - 1)
BOUNTY = st.integers(0, MAX_BOUNTIES - 1)  # an index into the existing bounties, modulo their number
AMOUNT = st.one_of(
    st.sampled_from([1, 2, 3, 7, 999, 10**18, 10**18 + 1, 10**21]),
    st.integers(1, 10**21),
)
SCORE = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 10**18, MAX_ABS_SCORE, MAX_ABS_SCORE - 1, -MAX_ABS_SCORE]),
    st.integers(-MAX_ABS_SCORE, MAX_ABS_SCORE),
    st.integers(-5, 10**6),
)
ADVANCE = st.sampled_from([1, 60, 599, 601, 3_600, 86_400, 86_401, 3 * 86_400])


@dataclass
class InstModel:
    registered: bool = False
    ever_joined: bool = False
    leave_requested_at: int = 0  # 0 while active
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
    status: BountyStatus = ACTIVE
    funded: int = 0
    credited: int = 0
    refunded: int = 0
    rounds_opened: int = 0
    rounds_finalized: int = 0
    commit_deadline: int = 0  # of the latest opened round
    commits: dict[str, bytes] = field(default_factory=dict)  # of the latest opened round
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
    def claimed_total(self) -> int:
        return sum(self.claimed.values())


class MoneyMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.w3 = connect("embedded")
        accounts = self.w3.eth.accounts
        self.gov, self.aggregator = accounts[0], accounts[2]
        self.sponsors = [accounts[1], accounts[3]]
        self.insts = list(accounts[4:4 + N_INSTS])
        self.others = [accounts[8], accounts[9]]  # funders, revenue payers, callers with no business
        deployment = deploy_fedledger(self.w3, self.gov, governance=self.gov, min_stake=MIN_STAKE, leave_cooldown=COOLDOWN)
        self.ledger = FedLedgerClient.from_deployment(self.w3, deployment)
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

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def _pick(self, index: int) -> BountyModel:
        ids = sorted(self.bounties)
        return self.bounties[ids[index % len(ids)]]

    def _side(self, boundary: int) -> int:
        """Where the next transaction's timestamp falls: -1 surely <= boundary, +1 surely > boundary, 0 unsure."""
        ts = latest_timestamp(self.w3) + 1  # the embedded chain mines each transaction in a block 1 s later
        if ts <= boundary - SLACK:
            return -1
        if ts > boundary + SLACK:
            return 1
        return 0

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
        """Run ``fn`` (a transaction sent by ``who``) and return (its result, what ``who`` really received)."""
        before = self._balance(who, token)
        result = fn()
        delta = self._balance(who, token) - before
        if token == ETH:
            delta += self._gas_of_last_tx(who)
        return result, delta

    def _ensure_tokens(self, who: str) -> None:
        if who not in self.token_ready:
            self.token.as_sender(who).mint(who, 10**30)
            self.token.as_sender(who).approve(self.ledger.address, MAX_UINT)
            self.token_ready.add(who)

    def _snapshot(self, bounty_id: int | None = None, who: str | None = None) -> tuple:
        """The state a refused transaction must leave unchanged."""
        L = self.ledger
        snap = [
            self.w3.eth.get_balance(L.address),
            self.token.balance_of(L.address),
            L.bounty_count(),
            L.slashed_balance(),
        ]
        if bounty_id is not None:
            snap += [L.bounty(bounty_id), L.escrow_of(bounty_id)]
            snap += [(L.revenue_total(bounty_id, t), L.revenue_released(bounty_id, t)) for t in self.tokens]
        if who is not None:
            snap.append(L.institution(who))
            if bounty_id is not None:
                snap.append(L.contribution_of(bounty_id, who))
        return tuple(snap)

    def _attempt(self, fn, *, ok: bool, errors: set[str] = frozenset(), bounty_id=None, who=None):
        """Send ``fn``. ``ok``: success is allowed; ``errors``: the revert names allowed. A revert must change
        nothing. Returns (True, result) or (False, the ContractRevert)."""
        assert ok or errors
        before = self._snapshot(bounty_id, who) if errors else None
        try:
            result = fn()
        except ContractRevert as exc:
            assert exc.name in errors, f"reverted with {exc}, expected {'success or ' if ok else ''}{sorted(errors)}"
            assert self._snapshot(bounty_id, who) == before, f"{exc.name} changed state"
            return False, exc
        assert ok, f"succeeded, expected a revert with one of {sorted(errors)}"
        return True, result

    def _must_revert(self, name: str, fn, *, bounty_id=None, who=None) -> None:
        self._attempt(fn, ok=False, errors={name}, bounty_id=bounty_id, who=who)

    # -- institutions ----------------------------------------------------------------------------------
    @rule(i=INST, stake=st.one_of(st.sampled_from([MIN_STAKE, MIN_STAKE, 3 * MIN_STAKE + 1, MIN_STAKE - 1]),
                                  st.integers(0, 10**19)))
    def join(self, i, stake):
        who = self.insts[i]
        m = self.inst[who]
        fn = lambda: self._as(who).join(f"hospital {i}", "ipfs://meta", stake=stake)  # noqa: E731
        if m.registered:
            return self._must_revert("AlreadyRegistered", fn, who=who)
        if stake < MIN_STAKE:
            return self._must_revert("StakeTooLow", fn, who=who)
        fn()
        m.registered, m.leave_requested_at, m.stake = True, 0, stake
        if not m.ever_joined:
            m.ever_joined, m.reputation = True, REP_INITIAL

    @rule(i=INST)
    def request_leave(self, i):
        who = self.insts[i]
        m = self.inst[who]
        fn = lambda: self._as(who).request_leave()  # noqa: E731
        if not m.registered:
            return self._must_revert("NotRegistered", fn, who=who)
        if m.leave_requested_at:
            return self._must_revert("LeaveAlreadyRequested", fn, who=who)
        fn()
        m.leave_requested_at = latest_timestamp(self.w3)

    @rule(i=INST)
    def withdraw_stake(self, i):
        who = self.insts[i]
        m = self.inst[who]
        fn = lambda: self._paying(who, ETH, self._as(who).withdraw_stake)  # noqa: E731
        if not m.registered:
            return self._must_revert("NotRegistered", fn, who=who)
        if not m.leave_requested_at:
            return self._must_revert("LeaveNotRequested", fn, who=who)
        side = self._side(m.leave_requested_at + COOLDOWN - 1)  # allowed once timestamp >= requested + cooldown
        done, result = self._attempt(fn, ok=side >= 0, errors={"CooldownNotOver"} if side <= 0 else set(), who=who)
        if done:
            assert result[1] == m.stake, "withdrawn stake differs from the stake held"
            m.registered, m.stake = False, 0  # the contract keeps leaveRequestedAt until the next join

    @rule(i=INST, fraction=st.sampled_from([0, 1, 2, 5, 10, 11]), by_gov=st.booleans())
    def slash(self, i, fraction, by_gov):
        """Governance slashes fraction/10 of the stake (11/10: more than the stake)."""
        who = self.insts[i]
        m = self.inst[who]
        amount = m.stake * fraction // 10 + (1 if fraction > 10 else 0)
        caller = self.gov if by_gov else self.others[0]
        fn = lambda: self._as(caller).slash(who, amount, h("evidence"))  # noqa: E731
        if not by_gov:
            return self._must_revert("NotGovernance", fn, who=who)
        if not m.registered:
            return self._must_revert("NotRegistered", fn, who=who)
        if amount > m.stake:
            return self._must_revert("SlashExceedsStake", fn, who=who)
        fn()
        m.stake -= amount
        self.slashed += amount

    @rule()
    def withdraw_slashed(self):
        to = self.others[1]
        fn = lambda: self._as(self.gov).withdraw_slashed(to)  # noqa: E731
        if self.slashed == 0:
            return self._must_revert("NothingToWithdraw", fn)
        before = self._balance(to, ETH)
        fn()
        assert self._balance(to, ETH) - before == self.slashed
        self.slashed = 0

    # -- bounties --------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.bounties) < MAX_BOUNTIES)
    @rule(
        s=st.integers(0, 1),
        in_token=st.booleans(),
        funding=st.one_of(st.just(0), AMOUNT),
        rounds=st.integers(1, 3),
        window=st.sampled_from([120, 600, 3_600]),
        deadline_in=st.sampled_from([3_600, 86_400, 3 * 86_400]),
        min_rep=st.sampled_from([0, 0, 0, 4_000, 5_000, 5_500]),
    )
    def create_bounty(self, s, in_token, funding, rounds, window, deadline_in, min_rep):
        sponsor = self.sponsors[s]
        token = self.token.address if in_token else ETH
        if in_token:
            self._ensure_tokens(sponsor)
        n = self._next()
        params = BountyParams(
            task_spec_hash=h(f"task {n}"),
            validation_set_hash=h(f"validation {n}"),
            aggregator=self.aggregator,
            num_rounds=rounds,
            commit_window=window,
            deadline=latest_timestamp(self.w3) + deadline_in,
            min_reputation=min_rep,
            token=token,
        )
        contract_before = self._balance(self.ledger.address, token)
        bounty_id = self._as(sponsor).create_bounty(params, funding)
        assert bounty_id == len(self.bounties) + 1
        assert self._balance(self.ledger.address, token) - contract_before == funding
        self.bounties[bounty_id] = BountyModel(
            id=bounty_id, sponsor=sponsor, token=token, num_rounds=rounds, commit_window=window,
            deadline=params.deadline, min_reputation=min_rep, funded=funding, model_hash=h(f"genesis {bounty_id}"),
        )

    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, f=st.integers(0, 3), amount=st.one_of(st.just(0), AMOUNT))
    def fund(self, bix, f, amount):
        b = self._pick(bix)
        funder = (self.sponsors + self.others)[f]
        if not b.is_eth:
            self._ensure_tokens(funder)
        fn = lambda: self._as(funder).fund_bounty(b.id, amount)  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("BountyNotActive", fn, bounty_id=b.id)
        if amount == 0:
            return self._must_revert("ZeroAmount", fn, bounty_id=b.id)
        fn()
        b.funded += amount

    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, by_sponsor=st.booleans())
    def cancel(self, bix, by_sponsor):
        b = self._pick(bix)
        caller = b.sponsor if by_sponsor else self.others[0]
        fn = lambda: self._paying(caller, b.token, lambda: self._as(caller).cancel_bounty(b.id))  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("BountyNotActive", fn, bounty_id=b.id)
        if not by_sponsor:
            return self._must_revert("NotSponsor", fn, bounty_id=b.id)
        side = -1 if b.rounds_opened == 0 else -self._side(b.deadline)  # before the first round, or after the deadline
        done, result = self._attempt(fn, ok=side <= 0, errors={"CancelNotAllowed"} if side >= 0 else set(), bounty_id=b.id)
        if not done:
            return
        receipt, received = result
        refund = b.escrowed
        assert self.ledger.events(receipt, "BountyCancelled")[0]["refunded"] == refund
        assert received == refund, "the sponsor's balance did not rise by the refund"
        b.refunded += refund
        b.status = CANCELLED

    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, by_sponsor=st.booleans())
    def refund_remainder(self, bix, by_sponsor):
        b = self._pick(bix)
        caller = b.sponsor if by_sponsor else self.others[0]
        fn = lambda: self._paying(caller, b.token, lambda: self._as(caller).refund_remainder(b.id))  # noqa: E731
        if b.status != COMPLETED:
            return self._must_revert("BountyNotCompleted", fn, bounty_id=b.id)
        if not by_sponsor:
            return self._must_revert("NotSponsor", fn, bounty_id=b.id)
        if b.escrowed == 0:
            return self._must_revert("NothingToRefund", fn, bounty_id=b.id)
        receipt, received = fn()
        assert self.ledger.events(receipt, "RemainderRefunded")[0]["amount"] == b.escrowed == received
        b.refunded += received
        assert b.escrowed == 0

    # -- rounds ----------------------------------------------------------------------------------------
    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, by_aggregator=st.booleans(), wrong_hash=st.sampled_from([False, False, False, True]))
    def open_round(self, bix, by_aggregator, wrong_hash):
        b = self._pick(bix)
        caller = self.aggregator if by_aggregator else b.sponsor
        wrong_hash = wrong_hash and b.rounds_opened > 0
        model = h("not the previous model") if wrong_hash else b.model_hash
        fn = lambda: self._as(caller).open_round(b.id, model)  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("BountyNotActive", fn, bounty_id=b.id)
        if not by_aggregator:
            return self._must_revert("NotAggregator", fn, bounty_id=b.id)
        if b.rounds_opened != b.rounds_finalized:
            return self._must_revert("PreviousRoundOpen", fn, bounty_id=b.id)
        if b.rounds_opened == b.num_rounds:
            return self._must_revert("AllRoundsOpened", fn, bounty_id=b.id)
        side = self._side(b.deadline)
        errors = ({"DeadlinePassed"} if side >= 0 else set()) | ({"ModelHashMismatch"} if wrong_hash and side <= 0 else set())
        done, round_ = self._attempt(fn, ok=side <= 0 and not wrong_hash, errors=errors, bounty_id=b.id)
        if not done:
            return
        assert round_ == b.rounds_opened + 1
        r = self.ledger.round(b.id, round_)
        assert r.opened_at <= b.deadline and r.commit_deadline == r.opened_at + b.commit_window
        b.rounds_opened = round_
        b.commit_deadline = r.commit_deadline
        b.commits = {}

    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, i=INST, copy=st.sampled_from([False, False, False, True]))
    def commit(self, bix, i, copy):
        """Commit an update hash (``copy``: the same hash as another committer's, which finalize must refuse)."""
        b = self._pick(bix)
        who = self.insts[i]
        m = self.inst[who]
        round_ = max(b.rounds_opened, 1)
        digest = next(iter(b.commits.values())) if copy and b.commits else h(f"update {self._next()}")
        fn = lambda: self._as(who).commit_update(b.id, round_, digest, 100)  # noqa: E731
        if b.status != ACTIVE:
            return self._must_revert("BountyNotActive", fn, bounty_id=b.id, who=who)
        if b.rounds_opened == 0:
            return self._must_revert("RoundNotOpen", fn, bounty_id=b.id, who=who)
        if b.rounds_finalized == b.rounds_opened:
            return self._must_revert("RoundClosed", fn, bounty_id=b.id, who=who)
        side = self._side(b.commit_deadline)
        if not m.registered or m.leave_requested_at:
            later = "NotRegistered"
        elif m.reputation < b.min_reputation:
            later = "NotEligible"
        elif who in b.commits:
            later = "AlreadyCommitted"
        else:
            later = None
        errors = ({"RoundClosed"} if side >= 0 else set()) | ({later} if later and side <= 0 else set())
        done, _ = self._attempt(fn, ok=side <= 0 and later is None, errors=errors, bounty_id=b.id, who=who)
        if done:
            assert self.ledger.commitment_of(b.id, round_, who) == digest
            b.commits[who] = digest

    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, by_aggregator=st.sampled_from([True, True, True, False]), data=st.data())
    def finalize(self, bix, by_aggregator, data):
        b = self._pick(bix)
        caller = self.aggregator if by_aggregator else b.sponsor
        round_ = max(b.rounds_opened, 1)
        new_model = h(f"model {b.id}/{round_}/{self._next()}")
        if b.status != ACTIVE or not by_aggregator or b.rounds_opened == 0 or b.rounds_finalized == b.rounds_opened:
            fn = lambda: self._as(caller).finalize_round(b.id, round_, new_model, {})  # noqa: E731
            if b.status != ACTIVE:
                return self._must_revert("BountyNotActive", fn, bounty_id=b.id)
            if not by_aggregator:
                return self._must_revert("NotAggregator", fn, bounty_id=b.id)
            if b.rounds_opened == 0:
                return self._must_revert("RoundNotOpen", fn, bounty_id=b.id)
            return self._must_revert("RoundClosed", fn, bounty_id=b.id)

        committed = sorted(b.commits)
        participants = data.draw(st.lists(st.sampled_from(committed), unique=True), "participants") if committed else []
        mode = data.draw(st.sampled_from(["mixed", "mixed", "mixed", "nonpositive", "huge", "tiny", "fault"]), "mode")
        if mode == "huge":
            scores = [data.draw(st.sampled_from([MAX_ABS_SCORE, MAX_ABS_SCORE - 1, -MAX_ABS_SCORE, 1])) for _ in participants]
        elif mode == "tiny":
            scores = [data.draw(st.integers(-1, 3)) for _ in participants]
        else:
            scores = [data.draw(SCORE) for _ in participants]
            if mode == "nonpositive":
                scores = [-abs(s) for s in scores]
        by_address = dict(zip(participants, scores))
        if mode == "fault":  # one more entry that the contract must refuse
            outsiders = [a for a in self.insts if a not in b.commits]
            kind = data.draw(st.sampled_from(["out of range", "not committed"] if outsiders else ["out of range"]))
            if kind == "not committed":
                by_address[data.draw(st.sampled_from(outsiders))] = data.draw(SCORE)
            elif participants:
                victim = data.draw(st.sampled_from(participants))
                by_address[victim] = data.draw(st.sampled_from([MAX_ABS_SCORE + 1, -MAX_ABS_SCORE - 1, 2**255 - 1]))

        # The contract's own checks, in its order: participants by ascending committed hash (as the client sends them).
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
            return self._must_revert(error, fn, bounty_id=b.id)

        # What it should credit: reward = escrow / rounds left, pro rata to positive scores (floor), and in the
        # last round the dust to the first best scorer.
        rounds_left = b.num_rounds - b.rounds_finalized
        reward = b.escrowed // rounds_left
        positive_total = sum(s for s in by_address.values() if s > 0)
        best, best_index = 0, 0
        for index, a in enumerate(ordered):
            if by_address[a] > best:
                best, best_index = by_address[a], index
        expected = {a: (reward * by_address[a] // positive_total if by_address[a] > 0 else 0) for a in ordered}
        if rounds_left == 1 and positive_total:
            expected[ordered[best_index]] += reward - sum(expected.values())

        receipt = fn()
        scored = self.ledger.events(receipt, "ContributionScored")
        assert [e["institution"] for e in scored] == ordered
        for e in scored:
            a, score = e["institution"], by_address[e["institution"]]
            assert e["score"] == score and e["round"] == round_ and e["bountyId"] == b.id
            assert e["credit"] == expected[a], f"credit {e['credit']} != expected {expected[a]}"
            assert e["credit"] >= 0
            m = self.inst[a]
            target = score * REP_ONE // best if score > 0 else 0
            step = abs(target - m.reputation) * REP_ALPHA // REP_ONE
            m.reputation += step if target >= m.reputation else -step
            assert e["reputation"] == m.reputation
        credited = sum(e["credit"] for e in scored)
        (fin,) = self.ledger.events(receipt, "RoundFinalized")
        assert fin["reward"] == reward and fin["credited"] == credited and fin["participants"] == len(ordered)
        assert credited <= reward <= b.escrowed
        for e in scored:
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
    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, i=st.integers(0, N_INSTS))  # N_INSTS: someone never credited
    def claim(self, bix, i):
        b = self._pick(bix)
        who = self.insts[i] if i < N_INSTS else self.others[1]
        unclaimed = b.credit.get(who, 0) - b.claimed.get(who, 0)
        fn = lambda: self._paying(who, b.token, lambda: self._as(who).claim(b.id))  # noqa: E731
        if unclaimed == 0:
            return self._must_revert("NothingToClaim", fn, bounty_id=b.id, who=who)
        amount, received = fn()
        assert amount == unclaimed, f"claim paid {amount}, {unclaimed} was owed"
        b.claimed[who] = b.claimed.get(who, 0) + amount
        b.received[who] = b.received.get(who, 0) + received

    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, in_token=st.booleans(), amount=st.one_of(st.just(0), AMOUNT), p=st.integers(0, 2))
    def pay_revenue(self, bix, in_token, amount, p):
        b = self._pick(bix)
        token = self.tokens[in_token]
        payer = [self.others[0], self.others[1], b.sponsor][p]
        if in_token:
            self._ensure_tokens(payer)
        fn = lambda: self._as(payer).pay_revenue(b.id, amount, token)  # noqa: E731
        if b.status != COMPLETED:
            return self._must_revert("BountyNotCompleted", fn, bounty_id=b.id)
        if b.total_positive == 0:
            return self._must_revert("NoContributors", fn, bounty_id=b.id)
        if amount == 0:
            return self._must_revert("ZeroAmount", fn, bounty_id=b.id)
        fn()
        b.rev_paid[token] = b.rev_paid.get(token, 0) + amount

    @precondition(lambda self: self.bounties)
    @rule(bix=BOUNTY, in_token=st.booleans(), i=INST)
    def claim_revenue(self, bix, in_token, i):
        b = self._pick(bix)
        token = self.tokens[in_token]
        who = self.insts[i]
        paid = b.rev_paid.get(token, 0)
        already = b.rev_claimed.get(token, {}).get(who, 0)
        share = paid * b.cum_score.get(who, 0) // b.total_positive if b.total_positive else 0
        fn = lambda: self._paying(who, token, lambda: self._as(who).claim_revenue(b.id, token))  # noqa: E731
        if share - already == 0:
            return self._must_revert("NothingDue", fn, bounty_id=b.id, who=who)
        amount, received = fn()
        assert amount == received == share - already
        claimed = b.rev_claimed.setdefault(token, {})
        claimed[who] = already + amount
        assert claimed[who] <= share and sum(claimed.values()) <= paid

    @rule(seconds=ADVANCE)
    def advance(self, seconds):
        before = latest_timestamp(self.w3)
        assert advance_time(self.w3, seconds) >= before + seconds

    # -- invariants ------------------------------------------------------------------------------------
    def _chain(self) -> dict:
        """Everything the invariants read, from the chain; re-read only when a new block was mined (the chain's
        state cannot change otherwise)."""
        block = self.w3.eth.block_number
        if self._cache is not None and self._cache[0] == block:
            return self._cache[1]
        L = self.ledger
        state = {
            "count": L.bounty_count(),
            "eth": self.w3.eth.get_balance(L.address),
            "tok": self.token.balance_of(L.address),
            "slashed": L.slashed_balance(),
            "insts": {a: L.institution(a) for a in self.insts},
            "bounties": {},
        }
        for bid, b in self.bounties.items():
            onchain = L.bounty(bid)
            contrib = {a: L.contribution_of(bid, a) for a in self.insts}
            revenue = {}
            if onchain.status == COMPLETED:  # revenue can only be paid into a completed bounty
                revenue = {t: (L.revenue_total(bid, t), L.revenue_released(bid, t)) for t in self.tokens}
            state["bounties"][bid] = (onchain, L.escrow_of(bid), contrib, revenue)
        self._cache = (block, state)
        return state

    @invariant()
    def books_balance_per_bounty(self):
        state = self._chain()
        assert state["count"] == len(self.bounties)
        for bid, b in self.bounties.items():
            onchain, escrow, _, _ = state["bounties"][bid]
            assert escrow >= 0
            assert onchain.credited + onchain.refunded + escrow == onchain.funded, f"bounty {bid}: books do not balance"
            assert onchain.escrowed == escrow
            assert (onchain.funded, onchain.credited, onchain.refunded) == (b.funded, b.credited, b.refunded), bid
            assert (onchain.status, onchain.rounds_opened, onchain.rounds_finalized) == (
                b.status, b.rounds_opened, b.rounds_finalized)
            assert onchain.total_positive_score == b.total_positive == sum(b.cum_score.values())
            assert onchain.credited == sum(b.credit.values())

    @invariant()
    def nobody_paid_more_than_credited(self):
        state = self._chain()
        for bid, b in self.bounties.items():
            _, _, contrib, _ = state["bounties"][bid]
            for a in self.insts:
                unclaimed, cumulative = contrib[a]
                credited, claimed = b.credit.get(a, 0), b.claimed.get(a, 0)
                assert claimed <= credited, f"{a} claimed {claimed} of bounty {bid}, credited only {credited}"
                assert b.received.get(a, 0) == claimed, f"{a}'s balance rose by other than its claims"
                assert claimed + unclaimed == credited, f"bounty {bid}, {a}: claimed + unclaimed != credited"
                assert cumulative == b.cum_score.get(a, 0)
            assert set(b.claimed) <= set(self.insts)  # someone never credited was never paid

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
            if onchain.status != COMPLETED:
                assert not b.rev_paid and not b.rev_claimed
                continue
            for t in self.tokens:
                total, released = revenue[t]
                claimed = b.rev_claimed.get(t, {})
                assert total == b.rev_paid.get(t, 0)
                assert released == sum(claimed.values()) <= total
                for a, amount in claimed.items():
                    assert amount <= total * contrib[a][1] // onchain.total_positive_score, f"{a} over its share"

    @invariant()
    def contract_balances_are_exact(self):
        state = self._chain()
        stakes = sum(i.stake for i in state["insts"].values())
        assert stakes == sum(m.stake for m in self.inst.values())
        assert state["slashed"] == self.slashed
        for a, i in state["insts"].items():
            m = self.inst[a]
            assert (i.registered, i.reputation, i.leave_requested_at) == (m.registered, m.reputation, m.leave_requested_at)
        held = {ETH: 0, self.token.address: 0}
        for bid, b in self.bounties.items():
            onchain, _, _, revenue = state["bounties"][bid]
            held[b.token] += onchain.funded - onchain.refunded - b.claimed_total
            for t, (total, released) in revenue.items():
                held[t] += total - released
        assert state["eth"] == held[ETH] + stakes + state["slashed"], "the contract's ETH balance leaks"
        assert state["tok"] == held[self.token.address], "the contract's token balance leaks"


MoneyMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestMoneyProperties = MoneyMachine.TestCase
