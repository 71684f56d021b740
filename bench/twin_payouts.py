"""Would another payout rule close the twins' gap? ``python -m bench.twin_payouts`` -> ``bench/results/twin_payouts.json``.

Replays bench-fairness's ``twins`` case (seeds 0-9, 15 rounds; GTG, and exact Shapley with ``--exact-up-to 4``) and
pays the same posted scores under rules that do not depend on the case (keys in ``bench/README.md``):

- ``current``: the chain's rule (each round's reward in proportion to its positive scores), as bench-fairness.
- ``gain_beyond_<k>_row_std_errors``: a round whose gain ``v(kept) - v(empty)`` is within ``k`` standard errors over
  the validation rows (plus the 1e-4 margin) pays nobody and carries its reward.
- ``by_cumulative_value``: the whole reward in proportion to each institution's positive scores summed over rounds.

Nothing here is a rule of the project: it measures whether one would help. The gate and the model are the rules' own
(no twin is left out in any round), so replaying payouts on the posted scores is exact.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import fairness

DEFAULT_OUT = Path(__file__).parent / "results" / "twin_payouts.json"
TWINS = ("twin_a", "twin_b")


def _rounds(seed: int, exact_up_to: int) -> list[dict[str, Any]]:
    """Each round's posted scores, its gain and the gain's standard error over the validation rows."""
    from aggregator import shapley
    from aggregator.scoring import _resolve_share, coalition_utility
    from fedcore.population import population_standard_error
    from fedledger.simulation import Institution, run_simulation

    case = next(c for c in fairness.built_cases(seed) if c.name == "twins")
    spec, rules = fairness._spec_and_rules(fairness._task(case.sites[0].X.shape[1], seed), seed, exact_up_to)
    out: list[dict[str, Any]] = []

    def on_round(record) -> None:
        utility = coalition_utility(global_weights=record.global_weights, updates=list(record.updates),
                                    strategy_name=rules.strategy, strategy_params=rules.strategy_params,
                                    strategy_state=None, spec=spec, X_val=case.validation[0],
                                    y_val=case.validation[1], utility_metric=rules.utility_metric,
                                    groups_val=case.groups)
        n = utility.n
        estimator = shapley.make_estimator(rules.estimator, **_resolve_share(dict(rules.estimator_params), n))
        estimate = estimator(n, shapley.CachedUtility(utility, n=n), seed=rules.round_seed(record.round))
        assert estimate.form is not None  # every utility estimator has one
        gain_rows = shapley.row_values(estimate.form, utility.per_row).sum(axis=0)
        scores = record.outcome.scores
        out.append({"posted": dict(record.outcome.fixed_point), "gain": scores.total,
                    "gain_row_std_error": float(population_standard_error(gain_rows[None, :], case.groups,
                                                                          utility.group_weights)[0]),
                    "left_out": sorted(record.outcome.excluded)})

    run_simulation([Institution(s.name, s.X, s.y) for s in case.sites], spec, rules, rounds=fairness.ROUNDS, seed=seed,
                   validation=case.validation, validation_groups=case.groups, transform_update=fairness._deliveries_of(case.sites),
                   on_round=on_round, keep_records=False, evaluate_every_round=False)
    return out


def _gap(credited: dict[str, int]) -> float:
    a, b = (credited[t] for t in TWINS)
    return abs(a - b) / max(a, b) if max(a, b) else 0.0


def payout_gaps(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """The twins' relative payout gap under each rule (module doc)."""
    names = list(rounds[0]["posted"])
    posted = [r["posted"] for r in rounds]
    gaps = {"current": _gap(fairness.chain_books(posted, names)["credited"])}
    for k in (1, 2):
        carried = [p if r["gain"] > k * r["gain_row_std_error"] + 1e-4 else {w: min(s, 0) for w, s in p.items()}
                   for p, r in zip(posted, rounds)]
        gaps[f"gain_beyond_{k}_row_std_errors"] = _gap(fairness.chain_books(carried, names)["credited"])
    gaps["by_cumulative_value"] = _gap({w: sum(max(p[w], 0) for p in posted) for w in names})
    return gaps


def run(seeds: tuple[int, ...], exact_up_to: int) -> dict[str, Any]:
    per_seed = {}
    for seed in seeds:
        rounds = _rounds(seed, exact_up_to)
        per_seed[seed] = {"gaps": payout_gaps(rounds), "twin_rounds_left_out": sum(
            any(t in r["left_out"] for t in TWINS) for r in rounds),
            "min_gain_over_row_std_error": min(r["gain"] / r["gain_row_std_error"] for r in rounds)}
    rules = list(next(iter(per_seed.values()))["gaps"])
    return {"max_gap": {k: max(s["gaps"][k] for s in per_seed.values()) for k in rules}, "seeds": per_seed,
            "exact_up_to": exact_up_to, "protocol": __doc__.split("\n\n", 1)[1].strip(),
            "command": "python -m bench.twin_payouts" + (f" --exact-up-to {exact_up_to}" if exact_up_to else "")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(fairness.SEEDS))
    parser.add_argument("--exact-up-to", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(tuple(args.seeds), args.exact_up_to)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps({"max_gap": result["max_gap"], "min_gain_over_row_std_error": float(np.min(
        [s["min_gain_over_row_std_error"] for s in result["seeds"].values()]))}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
