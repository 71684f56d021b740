"""Gas per transaction kind, read from receipts on the embedded chain: ``python -m bench.gas``.

Writes ``bench/results/gas.json`` (schema in bench/README.md). Every figure is a worst case: first-time
storage writes (a new institution, a new bounty, a first round), which cost 20,000 gas more per slot than
later updates of the same slot. The per-participant finalize cost is the least-squares slope over rounds of
4, 16 and 64 new participants; ``finalize_round_per_participant_returning`` is the same slope for a second
round with the same participants, whose storage slots already exist.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from eth_account import Account

from fedcore.commitments import sign_commitment
from ledger.chain import connect, fund_account, latest_timestamp
from ledger.client import (
    ETH,
    BountyParams,
    FedLedgerClient,
    RevenueSplitterClient,
    SignedCommitment,
    TokenClient,
    epsilon_units,
)
from ledger.compile import load_artifact
from ledger.deployment import deploy, deploy_fedledger

RESULTS = Path(__file__).parent / "results" / "gas.json"
MIN_STAKE = 10**16
SIZES = (4, 16, 64)
ROUND_SIZES = (4, 10, 50)  # participants per round for the amortized gas_per_participant_round
TARGETS = {"commit_update": 60_000, "finalize_round_per_participant": 35_000, "claim_eth": 45_000,
           "gas_per_participant_round.batched.10": 20_000}
FLOORS = {"commit_update": 21_000 + 22_100}  # the transaction + one new storage slot
ROUND_TIMING_KEYS = ("round_overhead_seconds", "round_seconds_plain", "round_seconds_flower", "round_seconds", "round_timing")  # bench/round.py


def _digest(*parts) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


class _Bench:
    def __init__(self):
        self.w3 = connect("embedded")
        self.gov, self.sponsor, self.aggregator = self.w3.eth.accounts[:3]
        deployment = deploy_fedledger(self.w3, self.gov, governance=self.gov, min_stake=MIN_STAKE, leave_cooldown=3600)
        self.ledger = FedLedgerClient.from_deployment(self.w3, deployment)
        self.splitter = RevenueSplitterClient.from_deployment(self.w3, deployment)
        self.created = 0

    def institutions(self, n: int) -> list:
        accounts = []
        for _ in range(n):
            self.created += 1
            account = Account.from_key(_digest("institution", self.created))
            fund_account(self.w3, account.address, 10**18)
            accounts.append(account)
        return accounts

    def gas(self, receipt) -> int:
        return int(receipt["gasUsed"])

    def bounty(self, rounds: int, token: str = ETH, funding: int = 10**18, epsilon_budget: int = 0) -> tuple[int, int]:
        params = BountyParams(task_spec_hash=_digest("task"), validation_set_hash=_digest("validation"),
                              rules_hash=_digest("rules"), aggregator=self.aggregator, num_rounds=rounds,
                              commit_window=3600, deadline=latest_timestamp(self.w3) + 10**6, token=token,
                              epsilon_budget=epsilon_budget)
        value = funding if token == ETH else 0
        receipt = self.ledger.as_sender(self.sponsor)._send("createBounty", params.as_tuple(), funding, value=value)
        bounty_id = self.ledger.events(receipt, "BountyCreated")[0]["bountyId"]
        return bounty_id, self.gas(receipt)

    def round(self, bounty_id: int, members: list, round_: int) -> tuple[int, list[int], int]:
        """Open, commit for every member, finalize; returns (open gas, commit gases, finalize gas)."""
        agg = self.ledger.as_sender(self.aggregator)
        model = self.ledger.round(bounty_id, round_ - 1).new_model_hash if round_ > 1 else _digest("model", 0)
        open_gas = self.gas(agg._send("openRound", bounty_id, model))
        commits = [
            self.gas(self.ledger.as_sender(m).commit_update(bounty_id, round_, _digest(bounty_id, round_, m.address), 100))
            for m in members
        ]
        scores = {m.address: 10**17 + i for i, m in enumerate(members)}
        finalize = self.gas(agg.finalize_round(bounty_id, round_, _digest("model", bounty_id, round_), scores))
        return open_gas, commits, finalize

    def batched_round(self, n: int, epsilon: float | None = None) -> tuple[int, int]:
        """Gas of every transaction of one round whose n new participants sign their commitments and the aggregator
        posts them in one batch: ``openRound`` + ``commitUpdatesSigned`` + ``finalizeRound``; and of the batch
        alone. ``epsilon``: the bounty's privacy budget, which every participant declares (None: no DP)."""
        members = self.institutions(n)
        for i, m in enumerate(members):
            self.ledger.as_sender(m).join(f"batched {i}", "", stake=MIN_STAKE)
        declared = epsilon_units(epsilon)
        bounty_id, _ = self.bounty(rounds=1, epsilon_budget=declared)
        agg = self.ledger.as_sender(self.aggregator)
        total = self.gas(agg._send("openRound", bounty_id, _digest("model", 0)))
        chain_id, contract = self.w3.eth.chain_id, self.ledger.address
        signed = []
        for m in members:
            commitment = _digest(bounty_id, 1, m.address)
            signature = sign_commitment(m, chain_id=chain_id, contract=contract, bounty_id=bounty_id, round_=1,
                                        commitment=commitment, sample_count=100, declared_epsilon=declared)
            signed.append(SignedCommitment(m.address, commitment, 100, signature, declared))
        batch = self.gas(agg.commit_updates_signed(bounty_id, 1, signed))
        scores = {m.address: 10**17 + i for i, m in enumerate(members)}
        return total + batch + self.gas(agg.finalize_round(bounty_id, 1, _digest("model", bounty_id, 1), scores)), batch


def _slope(sizes, gases) -> tuple[int, int]:
    slope, intercept = np.polyfit(np.asarray(sizes, float), np.asarray(gases, float), 1)
    return int(round(intercept)), int(round(slope))


def gas_per_participant_round(bench: _Bench, sizes=None) -> dict[str, int]:
    """Every transaction of a round (open, each participant's own commit, finalize) divided by its participants,
    by round size (as a string key; default ``ROUND_SIZES``): a first round of new participants, the worst case."""
    amortized = {}
    for n in sizes or ROUND_SIZES:
        members = bench.institutions(n)
        for i, m in enumerate(members):
            bench.ledger.as_sender(m).join(f"round inst {i}", "", stake=MIN_STAKE)
        bounty_id, _ = bench.bounty(rounds=1)
        open_gas, commits, finalize = bench.round(bounty_id, members, 1)
        amortized[str(n)] = round((open_gas + sum(commits) + finalize) / n)
    return amortized


def measure() -> dict:
    bench = _Bench()
    results: dict = {}
    first_finalize, second_finalize = [], []
    for n in SIZES:
        members = bench.institutions(n)
        joins = [bench.gas(bench.ledger.as_sender(m).join(f"inst {i}", "", stake=MIN_STAKE)) for i, m in enumerate(members)]
        results.setdefault("join", joins[0])
        bounty_id, create_gas = bench.bounty(rounds=2)
        results.setdefault("create_bounty", create_gas)
        open_gas, commits, finalize = bench.round(bounty_id, members, 1)
        results.setdefault("open_round", open_gas)
        results.setdefault("commit_update", commits[0])
        first_finalize.append(finalize)
        _, _, finalize_again = bench.round(bounty_id, members, 2)
        second_finalize.append(finalize_again)
        if n == SIZES[0]:
            results["claim_eth"] = bench.gas(bench.ledger.as_sender(members[0])._send("claim", bounty_id))
            payer = bench.splitter.as_sender(bench.sponsor)
            results["pay_revenue_eth"] = bench.gas(payer.pay_revenue(bounty_id, 10**15))
            results["claim_revenue_eth"] = bench.gas(bench.splitter.as_sender(members[0])._send("claimRevenue", bounty_id, ETH))
    results["finalize_round_base"], results["finalize_round_per_participant"] = _slope(SIZES, first_finalize)
    _, results["finalize_round_per_participant_returning"] = _slope(SIZES, second_finalize)
    results.update({f"finalize_round_{n}_participants": g for n, g in zip(SIZES, first_finalize)})

    # ERC-20: a token bounty of one round, then the claim.
    token_address, _ = deploy(bench.w3, "TestToken", sender=bench.gov, artifact=load_artifact("TestToken"))
    token = TokenClient(bench.w3, token_address, sender=bench.sponsor)
    token.mint(bench.sponsor, 10**18)
    token.approve(bench.ledger.address, 10**18)
    bounty_id, results["create_bounty_erc20"] = bench.bounty(rounds=1, token=token_address)
    member = bench.institutions(1)
    bench.ledger.as_sender(member[0]).join("token inst", "", stake=MIN_STAKE)
    bench.round(bounty_id, member, 1)
    results["claim_erc20"] = bench.gas(bench.ledger.as_sender(member[0])._send("claim", bounty_id))

    other, _ = bench.bounty(rounds=1)
    results["fund_bounty_eth"] = bench.gas(bench.ledger.as_sender(bench.sponsor).fund_bounty(other, 10**15))
    results["cancel_bounty"] = bench.gas(bench.ledger.as_sender(bench.sponsor).cancel_bounty(other))
    batched = {n: bench.batched_round(n) for n in ROUND_SIZES}
    results["gas_per_participant_round"] = {
        "self_commit": gas_per_participant_round(bench),
        "batched": {str(n): round(total / n) for n, (total, _) in batched.items()},
    }
    # One commitUpdatesSigned entry: the slope of the batch's gas over its size, without DP and with every entry
    # declaring an epsilon (10, a typical budget) on a DP bounty.
    dp_batches = [bench.batched_round(n, epsilon=10.0)[1] for n in ROUND_SIZES]
    results["commit_updates_signed_base"], results["commit_updates_signed_per_entry"] = _slope(
        ROUND_SIZES, [batch for _, batch in batched.values()])
    _, results["commit_updates_signed_per_entry_dp"] = _slope(ROUND_SIZES, dp_batches)
    return results


def _flat(figures: dict, prefix: str = "") -> dict[str, int]:
    """Nested figures as one level with dotted keys (``gas_per_participant_round.batched.10``)."""
    flat: dict[str, int] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Gas per transaction kind on the embedded chain.")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write the JSON (default {RESULTS})")
    out = parser.parse_args(argv).out
    gas = measure()
    previous = json.loads(out.read_text()) if out.exists() else {}
    flat = _flat(gas)
    report = {
        **{k: previous[k] for k in ROUND_TIMING_KEYS if k in previous},  # bench/round.py's figures stay
        **gas,
        "targets": TARGETS,
        "meets_target": {k: flat[k] <= v for k, v in TARGETS.items()},
        "floors": FLOORS,
        "chain": "embedded (eth-tester on py-evm, Shanghai rules)",
        "participant_sizes": list(SIZES),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    width = max(map(len, flat))
    for key in sorted(flat):
        target = TARGETS.get(key)
        mark = "" if target is None else f"  (target <= {target:,}: {'met' if flat[key] <= target else 'MISSED'})"
        print(f"{key:<{width}}  {flat[key]:>10,}{mark}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
