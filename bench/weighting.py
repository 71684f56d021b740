"""Which weighting of the sponsor's validation groups the Heart demo uses: pooled rows or equal weight per hospital.

Runs the demo's federation (``fedledger data heart`` files: the four hospitals' site CSVs, the sponsor's validation
set with its ``site`` column, the task's scaler; FedAvg with FLamby's settings, 15 rounds, GTG scoring) in process
through :func:`fedledger.simulation.run_simulation`, the same round computation the aggregator and the auditor run,
once per weighting and per scenario:

- ``honest``: the four hospitals as they are;
- ``attacker_<name>``: that hospital trains on flipped labels (the demo's ``--attacker``).

Every figure is a contribution value on the validation set (the utility the task declares); no test row is read, so
the choice is made on validation data only, by :data:`RULE` (fixed before running).

``python -m bench.weighting [--seeds 0 1 2 3 4] [--out bench/results/weighting.json]``; keys in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTINGS = ("pooled", "equal")
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_OUT = Path("bench/results/weighting.json")
ATTACKERS = ("cleveland", "hungarian", "switzerland", "va")
RULE = ("a weighting qualifies when, mean over seeds, every honest hospital's summed value over the rounds is positive "
        "in the honest federation and every attacker's is negative; among those that qualify, the largest "
        "smallest-honest-total wins; if none qualifies, the one with the largest smallest-honest-total among those "
        "that keep every attacker negative, else pooled")


def run_case(data_dir: Path, weighting: str, *, seed: int, attacker: str | None, rounds: int) -> dict[str, Any]:
    """One federation: per hospital its value in every round and their sum (validation-utility units)."""
    from aggregator.rules import resolve_rules
    from fedcore.population import load_validation_set
    from fedcore.task import TargetPopulation, TaskSpec
    from fedledger.simulation import Institution, run_simulation
    from fedsets.heart import FLAMBY_SETTINGS, HEART_CENTERS, HEART_GROUP_COLUMN
    from node.site import load_site

    spec = TaskSpec.load(data_dir / "task.json")
    spec = replace(spec, population=TargetPopulation(weighting=weighting, group_column=HEART_GROUP_COLUMN))
    validation = load_validation_set(data_dir / "validation.csv", spec)
    institutions = []
    for name in HEART_CENTERS:
        site = load_site(data_dir / f"{name}.csv", spec, name=name)
        y = (1.0 - site.y).astype(np.float32) if name == attacker else site.y
        institutions.append(Institution(name, site.X, y))
    rules = resolve_rules(spec=spec, strategy="fedavg", strategy_params=FLAMBY_SETTINGS["fedavg"][0],
                          estimator="gtg", seed=seed)
    result = run_simulation(institutions, spec, rules, rounds=rounds, seed=seed, validation=(validation.X, validation.y),
                            validation_groups=validation.groups, evaluate_every_round=False)
    per_round = {name: [r.outcome.scores.values.get(name, 0.0) if r.outcome.scores else 0.0 for r in result.rounds]
                 for name in HEART_CENTERS}
    return {"per_round": per_round, "total": {n: math.fsum(v) for n, v in per_round.items()},
            "used": [list(r.outcome.used) for r in result.rounds]}


def choose(summary: dict[str, Any]) -> tuple[str, str]:
    """The weighting by the module's rule, and why."""
    def smallest_honest(w: str) -> float:
        return min(summary[w]["honest"]["mean_total"].values())

    def attackers_negative(w: str) -> bool:
        return all(v["mean_total"][s.removeprefix("attacker_")] < 0 for s, v in summary[w].items() if s != "honest")

    qualifying = [w for w in WEIGHTINGS if smallest_honest(w) > 0 and attackers_negative(w)]
    if qualifying:
        best = max(qualifying, key=smallest_honest)
        return best, f"qualifies (every honest hospital positive, every attacker negative): {qualifying}"
    safe = [w for w in WEIGHTINGS if attackers_negative(w)]
    if safe:
        best = max(safe, key=smallest_honest)
        return best, "none qualifies; largest smallest-honest-total among those keeping attackers negative"
    return "pooled", "none keeps every attacker negative"


def main(argv: list[str] | None = None) -> int:
    from fedledger.datasets import write_heart
    from fedsets.heart import ROUNDS

    parser = argparse.ArgumentParser(prog="python -m bench.weighting", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--attackers", nargs="+", default=list(ATTACKERS), choices=ATTACKERS,
                        help="the attacker scenarios to run (default: each hospital in turn)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cases: dict[str, dict[str, dict[str, Any]]] = {w: {} for w in WEIGHTINGS}
    scenarios = [("honest", None)] + [(f"attacker_{a}", a) for a in args.attackers]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            data_dir = Path(tmp) / f"seed{seed}"
            write_heart(data_dir, seed=seed)  # the demo's data: carving seeded like `fedledger demo --seed`
            for weighting in WEIGHTINGS:
                for scenario, attacker in scenarios:
                    case = run_case(data_dir, weighting, seed=seed, attacker=attacker, rounds=args.rounds)
                    cases[weighting].setdefault(scenario, {})[str(seed)] = case
                    totals = ", ".join(f"{n} {v:+.4f}" for n, v in case["total"].items())
                    print(f"seed {seed} {weighting:<6} {scenario:<22} {totals}", file=sys.stderr)
    summary: dict[str, Any] = {}
    for weighting, by_scenario in cases.items():
        summary[weighting] = {}
        for scenario, by_seed in by_scenario.items():
            names = list(next(iter(by_seed.values()))["total"])
            summary[weighting][scenario] = {
                "mean_total": {n: float(np.mean([c["total"][n] for c in by_seed.values()])) for n in names},
                "min_total": {n: float(min(c["total"][n] for c in by_seed.values())) for n in names},
                "positive_rounds": {n: int(sum(v > 0 for c in by_seed.values() for v in c["per_round"][n]))
                                    for n in names},
                "mean_per_round": {n: [float(np.mean(vs)) for vs in zip(*(c["per_round"][n] for c in by_seed.values()))]
                                   for n in names},
            }
    chosen, why = choose(summary)
    report = {
        "chosen": chosen, "why": why,
        "rule": RULE,
        "summary": summary, "cases": cases, "seeds": list(args.seeds), "rounds": args.rounds,
        "rounds_per_seed_and_case": args.rounds * len(args.seeds),
        "setup": "fedledger data heart files (seed = carving seed = training seed = scoring seed), FedAvg with FLamby's "
                 "settings, GTG scoring with the default rules, utility validation log loss under the weighting",
        "command": "python -m bench.weighting " + " ".join(argv if argv is not None else sys.argv[1:]),
        "elapsed_seconds": round(time.perf_counter() - started, 1),
        "environment": {"python": platform.python_version(), "machine": platform.machine()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"chosen {chosen}: {why}; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
