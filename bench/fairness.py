"""Who gets paid: payout shares, reputations and accuracy under honest, free-riding and label-flipping institutions.

``make bench-fairness`` (``python -m bench.fairness``) writes ``bench/results/fairness.json`` (keys in
``bench/README.md``). Every run is :func:`fedledger.simulation.run_simulation`, so every round goes through
:func:`aggregator.rounds.compute_round` with the bounty's resolved rules (contribution gate included) exactly as the
coordinator and the auditor run it; no chain. The on-chain books are replayed by :func:`chain_books`, a line-by-line
mirror of ``RoundLedger.finalizeRound`` (round reward = escrow / rounds left, credited in proportion to the positive
fixed-point scores, last round's dust to its best scorer, a round without a positive score credits nothing and its
reward stays in escrow) and of ``InstitutionRegistry._updateReputation`` at full alpha (reliability: in every round,
20% of the way towards 10,000 for a positive score and towards 0 for a negative one; zero moves nothing). The
rules post a negative value within its spread as 0 (``zero_within_spread``), so only harm told apart from zero lowers
a reputation, and no positive score in a round whose gain of what entered the model is not positive
(``pay_only_gain``), so such a round pays nobody (its negative scores still lower reputations).

Cases (seeds 0-9 each, 15 rounds, FedAvg with FLamby's Fed-Heart-Disease settings, GTG, the demo's rules):

- ``heart``, ``heart_attacker``, ``heart_free_rider``: the four hospitals as ``make demo`` builds them
  (``fedledger data heart`` files for the seed: the task's scaler, its declared weighting of the validation set's
  ``site`` groups); the attacker (hungarian) trains on flipped labels, the free rider (cleveland) sends a zero update
  claiming all its rows.
- built from the task's own rows (the pooled site-training rows of the seed's carving, standardized with their pooled
  mean and std, the sponsor's published scaler; validation = the pooled validation slices, test = every center's test
  part): ``twins`` (two sites with the same rows, each training with its own seed), ``twins_identical`` (the same,
  but the second twin delivers the first one's update: what is left of the twins' gap is the estimator's),
  ``free_rider``, ``flip_0/25/50/100`` (one site of four with that
  share of its labels flipped), ``quantity_ladder`` (sizes 1:2:4:8), ``small_group`` (a site holding only
  Switzerland's rows, the only source of that validation group, beside three sites that share the other centers;
  the utility weights the four centers' validation groups equally) and ``small_group_pooled`` (the same under the
  pooled utility).

Utility: the validation log loss (the rules' default) under the task's weighting (pooled unless said otherwise).

Row diagnostics (``twins``, ``twins_identical``, ``small_group``, ``small_group_pooled``): each round's updates are also
valued by exact Shapley and every value split over the validation rows (:func:`aggregator.shapley.row_values`), which
says whether the sponsor's validation rows tell the twins' updates apart (the paired difference of their per-row
values against its standard error) and which validation groups make a site's value negative.

``--model mlp`` (``bench/results/fairness_mlp.json``) runs the three Heart cases alone with the demo's MLP task
(``fedledger demo --model mlp``: the task's own training settings and the server step search,
``fedsets.heart.HEART_STEP_SEARCH``); the built cases stay the logistic regression's.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.task import TargetPopulation

ROUNDS = 15
SEEDS = tuple(range(10))
REWARD = 10 * 10**18
REPUTATION_ONE, REPUTATION_START, REPUTATION_ALPHA_BPS = 10_000, 5_000, 2_000
HONEST, ATTACKER, FREE_RIDER, NOISY = "honest", "attacker", "free-rider", "noisy"
HEART_ATTACKER, HEART_FREE_RIDER = "hungarian", "cleveland"
FLIP_SHARES = (0, 25, 50, 100)
SUMMARY_KEYS = ("honest_min_payout_share", "attacker_max_payout_share", "free_rider_max_payout_share",
                "twin_max_relative_gap", "twin_identical_max_relative_gap", "honest_min_reputation",
                "accuracy_with_attacker", "accuracy_without_attacker")
DEFAULT_OUT = Path(__file__).parent / "results" / "fairness.json"


@dataclass(frozen=True)
class Site:
    """One institution of a case: its training rows, its role, and how its update is delivered."""

    name: str
    X: np.ndarray
    y: np.ndarray  # the labels it trains on (flipped ones included)
    role: str
    zero_update: bool = False
    copies: str | None = None  # the site whose update this one delivers (identical twins)


@dataclass(frozen=True)
class Case:
    """A federation to run: its sites, the sponsor's validation set and the test rows results are read on."""

    name: str
    sites: tuple[Site, ...]
    validation: tuple[np.ndarray, np.ndarray]
    tests: dict[str, tuple[np.ndarray, np.ndarray]]  # test set name -> (X, y); accuracy is their mean
    notes: dict[str, Any] = field(default_factory=dict)
    spec: Any = None  # the task (None: the Heart task on the case's columns, no scaler, pooled utility)
    groups: tuple[str, ...] | None = None  # each validation row's group, for a task that weights groups


# ---------------------------------------------------------------------------------------------
# The books the chain keeps (mirror of RoundLedger.finalizeRound and InstitutionRegistry._updateReputation)


def chain_books(rounds: list[dict[str, int]], names: list[str], *, reward: int = REWARD) -> dict[str, dict]:
    """Credits and reputations the contract gives for these on-chain scores, round by round.

    Parameters
    ----------
    rounds : list of {institution: fixed-point score}
        Each finalized round's posted scores.
    names : list of str
        Every institution (reputation starts at 5,000 basis points).

    Returns
    -------
    dict
        ``{"credited": {name: wei}, "reputation": {name: bps}, "refunded": wei}``.
    """
    escrow = reward
    credited = dict.fromkeys(names, 0)
    reputation = dict.fromkeys(names, REPUTATION_START)
    for index, scores in enumerate(rounds):
        left = len(rounds) - index
        round_reward = escrow // left
        positive_total = sum(s for s in scores.values() if s > 0)
        best_name, best = None, 0
        for who in sorted(scores):  # the contract's order (by update hash) only decides ties of the best score
            if scores[who] > best:
                best_name, best = who, scores[who]
        dust = 0
        if left == 1 and positive_total:
            dust = round_reward - sum(round_reward * s // positive_total for s in scores.values() if s > 0)
        paid = 0
        for who, s in scores.items():
            credit = round_reward * s // positive_total + (dust if who == best_name else 0) if s > 0 else 0
            credited[who] += credit
            paid += credit
            current = reputation[who]
            if s > 0:  # every round moves reputation by the sign of the score, whether or not it pays
                reputation[who] = current + (REPUTATION_ONE - current) * REPUTATION_ALPHA_BPS // REPUTATION_ONE
            elif s < 0:
                reputation[who] = current - current * REPUTATION_ALPHA_BPS // REPUTATION_ONE
        escrow -= paid
    return {"credited": credited, "reputation": reputation, "refunded": escrow}


# ---------------------------------------------------------------------------------------------
# Cases


def _heart_parts(seed: int):
    from fedsets.heart import heart_parts

    return heart_parts(validation_fraction=0.25, seed=seed)


def heart_case(seed: int, data_dir: Path, *, attacker: str | None = None, free_rider: str | None = None,
               name: str = "heart", model: str | None = None) -> Case:
    """The four hospitals as ``fedledger demo --seed seed`` builds them: ``fedledger data heart`` files (written into
    ``data_dir``), the task's scaler and population, each site and test part read and scaled as the demo does."""
    from fedcore.population import load_validation_set
    from fedcore.tables import read_task_table
    from fedcore.task import TaskSpec
    from fedledger.datasets import TASK_FILE, VALIDATION_FILE, write_heart
    from fedsets.heart import HEART_CENTERS
    from node.site import load_site

    if not (data_dir / TASK_FILE).exists():
        write_heart(data_dir, seed=seed, model=model)
    spec = TaskSpec.load(data_dir / TASK_FILE)
    validation = load_validation_set(data_dir / VALIDATION_FILE, spec)
    sites, tests = [], {}
    for center in HEART_CENTERS:
        local = load_site(data_dir / f"{center}.csv", spec, name=center)
        test = read_task_table(data_dir / "test" / f"{center}.csv", spec.feature_columns, spec.label_column,
                               dtype=np.float64)
        role = ATTACKER if center == attacker else FREE_RIDER if center == free_rider else HONEST
        sites.append(Site(center, local.X, (1.0 - local.y).astype(np.float32) if role == ATTACKER else local.y, role,
                          zero_update=role == FREE_RIDER))
        tests[center] = (local.scaling.transform(test.features), test.labels)
    return Case(name, tuple(sites), (validation.X, validation.y), tests,
                {"attacker": attacker, "free_rider": free_rider, "weighting": spec.population.weighting},
                spec=spec, groups=validation.groups)


def _pooled(seed: int):
    """The seed's pooled site-training rows (with their center), validation and test rows, standardized with the
    training rows' pooled statistics."""
    from fedcore.preprocessing import fit_preprocessor

    parts = _heart_parts(seed)
    X = np.concatenate([p.table.X[p.train_index] for p in parts])
    y = np.concatenate([p.table.y[p.train_index] for p in parts]).astype(np.float32)
    center = np.concatenate([[p.name] * len(p.train_index) for p in parts])
    pre = fit_preprocessor(X, impute="drop", normalize=True)
    X_val = np.concatenate([p.table.X[p.validation_index] for p in parts])
    y_val = np.concatenate([p.table.y[p.validation_index] for p in parts]).astype(np.float32)
    val_center = tuple(np.concatenate([[p.name] * len(p.validation_index) for p in parts]))
    X_test = np.concatenate([p.table.X[p.test_index] for p in parts])
    y_test = np.concatenate([p.table.y[p.test_index] for p in parts]).astype(np.float32)
    return (pre.transform(X), y, center, (pre.transform(X_val), y_val), val_center,
            {"all_test_rows": (pre.transform(X_test), y_test)})


def _deal(n_rows: int, weights: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices dealt at random into groups with sizes proportional to ``weights``."""
    order = rng.permutation(n_rows)
    cuts = np.floor(np.cumsum(weights) / np.sum(weights) * n_rows).astype(int)
    return [np.sort(a) for a in np.split(order, cuts[:-1])]


def built_cases(seed: int) -> list[Case]:
    """The cases built from the task's own rows (module doc)."""
    X, y, center, validation, val_center, tests = _pooled(seed)
    rng = np.random.default_rng(1000 + seed)
    cases = []

    a, b, c = _deal(len(y), [1, 1, 1], rng)
    for name, copies in (("twins", None), ("twins_identical", "twin_a")):
        cases.append(Case(name, (Site("twin_a", X[a], y[a], HONEST), Site("twin_b", X[a], y[a], HONEST, copies=copies),
                                 Site("site_b", X[b], y[b], HONEST), Site("site_c", X[c], y[c], HONEST)),
                          validation, tests, {"twins": ["twin_a", "twin_b"], "identical_updates": copies is not None}))

    quarters = _deal(len(y), [1, 1, 1, 1], rng)
    cases.append(Case("free_rider", tuple(
        Site(f"site_{k}", X[i], y[i], FREE_RIDER if k == 3 else HONEST, zero_update=k == 3)
        for k, i in enumerate(quarters)), validation, tests))
    for share in FLIP_SHARES:
        flipped = quarters[3]
        labels = y[flipped].copy()
        chosen = rng.permutation(len(labels))[: int(round(share / 100 * len(labels)))]
        labels[chosen] = 1.0 - labels[chosen]
        role = HONEST if share == 0 else ATTACKER if share == 100 else NOISY
        sites = [Site(f"site_{k}", X[i], y[i], HONEST) for k, i in enumerate(quarters[:3])]
        cases.append(Case(f"flip_{share}", (*sites, Site("flipper", X[flipped], labels, role)), validation, tests,
                          {"flipped_share": share / 100}))

    ladder = _deal(len(y), [1, 2, 4, 8], rng)
    cases.append(Case("quantity_ladder", tuple(Site(f"size_{2 ** k}", X[i], y[i], HONEST) for k, i in enumerate(ladder)),
                      validation, tests, {"size_ratios": [1, 2, 4, 8]}))

    small = np.flatnonzero(center == "switzerland")
    rest = np.flatnonzero(center != "switzerland")
    dealt = _deal(len(rest), [1, 1, 1], rng)
    small_sites = (Site("switzerland_only", X[small], y[small], HONEST),
                   *(Site(f"site_{k}", X[rest[i]], y[rest[i]], HONEST) for k, i in enumerate(dealt)))
    for weighting in ("equal", "pooled"):
        spec = replace(_task(X.shape[1], seed), population=TargetPopulation(weighting=weighting, group_column="site"))
        cases.append(Case("small_group" if weighting == "equal" else "small_group_pooled", small_sites, validation,
                          tests, {"weighting": weighting, "small_site_rows": int(len(small))}, spec=spec,
                          groups=val_center))
    return cases


# ---------------------------------------------------------------------------------------------
# One run


def _task(n_features: int, seed: int):
    """The Heart logistic-regression task on ``n_features`` already scaled columns (no scaler), pooled utility."""
    from fedsets.heart import heart_task_spec

    return heart_task_spec(tuple(f"x{i}" for i in range(n_features)), model="logreg")


def _spec_and_rules(spec, seed: int, exact_up_to: int = 0):
    """The demo's run of ``spec``: FedAvg (FLamby's client settings for the logistic regression, the task's own for
    the MLP), GTG (exact Shapley up to ``exact_up_to`` institutions), the rules' default utility and gate, the
    model's server step search (``fedsets.heart.HEART_STEP_SEARCH``)."""
    from aggregator.rules import resolve_rules
    from fedsets.heart import FLAMBY_SETTINGS, HEART_STEP_SEARCH

    kwargs, client = FLAMBY_SETTINGS["fedavg"]
    spec = spec.with_training(seed=seed, **(client if spec.model == "logreg" else {}))
    return spec, resolve_rules(spec=spec, strategy="fedavg", strategy_params=kwargs, estimator="gtg",
                               estimator_params={"exact_up_to": exact_up_to}, seed=seed,
                               step_search=HEART_STEP_SEARCH[spec.model])


def _deliveries_of(sites: tuple[Site, ...]) -> Callable:
    """The simulation's ``transform_update``: a free rider's update zeroed, a copier's replaced by its source's (the
    simulation trains the sites in their order, and a case lists a source before its copier)."""
    from fedcore.types import Update

    riders = {s.name for s in sites if s.zero_update}
    copies = {s.name: s.copies for s in sites if s.copies}
    delivered: dict[tuple[int, str], Any] = {}

    def transform(round_: int, name: str, update):
        delivered[round_, name] = update
        if name in copies:
            source = delivered[round_, copies[name]]
            return Update(name, {k: v.copy() for k, v in source.arrays.items()}, source.num_samples, {})
        if name not in riders:
            return update
        return Update(name, {k: np.zeros_like(v) for k, v in update.arrays.items()}, update.num_samples, {})

    return transform


def _accuracy(spec, weights, tests: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    from fedledger.simulation import evaluate_weights

    return float(np.mean([evaluate_weights(spec, weights, X, y)["accuracy"] for X, y in tests.values()]))


#: Cases whose rounds are also split over the validation rows (module doc, "Row diagnostics").
ROW_DIAGNOSED = ("twins", "twins_identical", "small_group", "small_group_pooled")


def row_diagnostics(record, case: Case, spec, rules) -> dict[str, Any]:
    """One round's exact Shapley values split over the validation rows (module doc).

    Returns
    -------
    dict
        ``values`` and ``row_std_errors`` per institution (utility units); with groups, ``by_group``: per institution
        and validation group, the mean of its per-row values there (the value is their weighted sum); for twins,
        ``twin_difference`` and ``twin_difference_row_std_error`` (of the paired per-row difference).
    """
    from aggregator import shapley
    from aggregator.scoring import coalition_utility
    from fedcore.population import population_standard_error

    utility = coalition_utility(global_weights=record.global_weights, updates=list(record.updates),
                                strategy_name=rules.strategy, strategy_params=rules.strategy_params,
                                strategy_state=None, spec=spec, X_val=case.validation[0], y_val=case.validation[1],
                                utility_metric=rules.utility_metric, groups_val=case.groups)  # FedAvg: no state
    estimate = shapley.exact_shapley(utility.n, shapley.CachedUtility(utility, n=utility.n))
    assert estimate.form is not None  # exact Shapley has one
    rows = shapley.row_values(estimate.form, utility.per_row)
    errors = population_standard_error(rows, case.groups, utility.group_weights)
    out: dict[str, Any] = {"values": dict(zip(utility.ids, estimate.values.tolist())),
                           "row_std_errors": dict(zip(utility.ids, errors.tolist()))}
    if case.groups is not None:
        labels = np.asarray(case.groups)
        out["by_group"] = {who: {g: float(rows[i, labels == g].mean()) for g in sorted(set(case.groups))}
                           for i, who in enumerate(utility.ids)}
    twins = case.notes.get("twins")
    if twins:
        a, b = (utility.ids.index(t) for t in twins)
        out["twin_difference"] = float(estimate.values[a] - estimate.values[b])
        out["twin_difference_row_std_error"] = float(
            population_standard_error((rows[a] - rows[b])[None, :], case.groups, utility.group_weights)[0])
    return out


def run_case(case: Case, seed: int, rounds: int = ROUNDS, exact_up_to: int = 0) -> dict[str, Any]:
    """One federation of ``case`` for ``seed``: per institution payout share, reputation, role, standalone accuracy."""
    from fedledger.simulation import Institution, run_simulation, train_centralized

    spec, rules = _spec_and_rules(case.spec or _task(case.sites[0].X.shape[1], seed), seed, exact_up_to)
    institutions = [Institution(s.name, s.X, s.y) for s in case.sites]
    posted: list[dict[str, int]] = []
    left_out: dict[str, int] = dict.fromkeys((s.name for s in case.sites), 0)
    diagnosed: list[dict[str, Any]] = []

    def on_round(record) -> None:
        posted.append(dict(record.outcome.fixed_point))
        for who in record.outcome.excluded:
            left_out[who] = left_out.get(who, 0) + 1
        if case.name in ROW_DIAGNOSED:
            diagnosed.append(row_diagnostics(record, case, spec, rules))

    result = run_simulation(institutions, spec, rules, rounds=rounds, seed=seed, validation=case.validation,
                            validation_groups=case.groups, transform_update=_deliveries_of(case.sites), on_round=on_round, keep_records=False,
                            evaluate_every_round=False)
    names = [s.name for s in case.sites]
    books = chain_books(posted, names)
    total = sum(books["credited"].values())
    standalone = {}
    for s in case.sites:  # what each delivers on its own: a free rider delivers the initial model
        weights = result.initial_weights if s.zero_update else train_centralized(s.X, s.y, spec, seed=seed)
        standalone[s.name] = _accuracy(spec, weights, case.tests)
    institutions_out = {
        s.name: {"role": s.role, "rows": int(len(s.y)), "payout_share": books["credited"][s.name] / total if total else 0.0,
                 "credited_wei": books["credited"][s.name], "reputation": books["reputation"][s.name],
                 "rounds_left_out": left_out[s.name], "standalone_accuracy": standalone[s.name]}
        for s in case.sites
    }
    out = {"seed": seed, "accuracy": _accuracy(spec, result.final_weights, case.tests),
           "initial_accuracy": _accuracy(spec, result.initial_weights, case.tests),
           "refunded_share": books["refunded"] / REWARD, "institutions": institutions_out,
           "collaborative_fairness": _pearson([institutions_out[n]["payout_share"] for n in names],
                                              [standalone[n] for n in names])}
    if diagnosed:
        out["row_diagnostics"] = diagnosed
    return out


def _pearson(a: list[float], b: list[float]) -> float | None:
    """CFFL's collaborative fairness: Pearson correlation of payout with standalone accuracy (None if either is flat)."""
    x, z = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.std(x) == 0 or np.std(z) == 0:
        return None
    return float(np.corrcoef(x, z)[0, 1])


def _cases_of(seed: int, data_dir: Path, model: str = "logreg") -> list[Case]:
    """Every case for the logistic regression; the three Heart cases alone for another model (``--model mlp``)."""
    heart = [heart_case(seed, data_dir, model=model),
             heart_case(seed, data_dir, attacker=HEART_ATTACKER, name="heart_attacker", model=model),
             heart_case(seed, data_dir, free_rider=HEART_FREE_RIDER, name="heart_free_rider", model=model)]
    return [*heart, *built_cases(seed)] if model == "logreg" else heart


def _run_seed(seed: int, rounds: int, exact_up_to: int, model: str = "logreg") -> list[tuple[str, dict, dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        return [(case.name, case.notes, run_case(case, seed, rounds, exact_up_to))
                for case in _cases_of(seed, Path(tmp), model)]


# ---------------------------------------------------------------------------------------------
# Summary


def _mean(values: list[float]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _twin_gaps(case: dict) -> list[float]:
    """Per seed, the twins' payout gap relative to the larger of the two."""
    gaps = []
    for run in case["runs"]:
        a, b = (run["institutions"][n]["payout_share"] for n in case["notes"]["twins"])
        gaps.append(abs(a - b) / max(a, b) if max(a, b) > 0 else 0.0)
    return gaps


def _told_apart(run: dict) -> int:
    """Rounds in which the twins' exact values differ by more than 2 standard errors of their paired per-row
    difference: the sponsor's validation rows tell the two updates apart."""
    return sum(abs(r["twin_difference"]) > 2 * r["twin_difference_row_std_error"] for r in run["row_diagnostics"])


def _unpaid(run: dict, who: str) -> dict[str, Any]:
    """An unpaid honest site's exact values over the run: rounds negative, rounds negative beyond 2 standard errors
    over the validation rows, and its mean per-row value in each validation group (mean over rounds)."""
    rounds = run["row_diagnostics"]
    groups = sorted(rounds[0]["by_group"][who])
    return {"seed": run["seed"], "institution": who,
            "rounds_negative": sum(r["values"][who] < 0 for r in rounds),
            "rounds_beyond_2_row_std_errors": sum(r["values"][who] < -2 * r["row_std_errors"][who] for r in rounds),
            "by_group_mean": {g: float(np.mean([r["by_group"][who][g] for r in rounds])) for g in groups}}


def summarize(cases: dict[str, dict]) -> dict[str, Any]:
    """The top-level summary keys (bench/README.md)."""
    def shares(role: str) -> list[float]:
        return [i["payout_share"] for c in cases.values() for run in c["runs"] for i in run["institutions"].values()
                if i["role"] == role]

    with_attacker = _mean([r["accuracy"] for r in cases["heart_attacker"]["runs"]])
    without = _mean([r["accuracy"] for r in cases["heart"]["runs"]])
    twins = "twins" in cases  # the built cases run with the logistic regression only
    summary = {
        "honest_min_payout_share": min(shares(HONEST)),
        "attacker_max_payout_share": max(shares(ATTACKER)),
        "free_rider_max_payout_share": max(shares(FREE_RIDER)),
        "twin_max_relative_gap": max(_twin_gaps(cases["twins"])) if twins else None,
        "twin_identical_max_relative_gap": max(_twin_gaps(cases["twins_identical"])) if twins else None,
        "honest_min_reputation": min(i["reputation"] for c in cases.values() for run in c["runs"]
                                     for i in run["institutions"].values() if i["role"] == HONEST),
        "accuracy_with_attacker": with_attacker,
        "accuracy_without_attacker": without,
        "collaborative_fairness": {name: c["collaborative_fairness"] for name, c in cases.items()},
    }
    if twins:
        summary["twin_rounds_told_apart"] = [_told_apart(run) for run in cases["twins"]["runs"]
                                             if "row_diagnostics" in run]
        summary["small_group_unpaid"] = [_unpaid(run, who) for run in cases["small_group"]["runs"]
                                         for who, i in run["institutions"].items()
                                         if i["role"] == HONEST and i["payout_share"] == 0 and "row_diagnostics" in run]
    summary["targets"] = {
        "attacker_max_payout_share == 0": summary["attacker_max_payout_share"] == 0,
        "free_rider_max_payout_share <= 0.01": summary["free_rider_max_payout_share"] <= 0.01,
        "honest_min_payout_share > 0": summary["honest_min_payout_share"] > 0,
        **({"twin_max_relative_gap <= 0.05": summary["twin_max_relative_gap"] <= 0.05} if twins else {}),
        "accuracy_without_attacker - accuracy_with_attacker <= 0.01": (without - with_attacker) <= 0.01,
    }
    return summary


def run(seeds: tuple[int, ...] = SEEDS, rounds: int = ROUNDS, workers: int = 1, exact_up_to: int = 0,
        model: str = "logreg") -> dict[str, Any]:
    started = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            per_seed = list(pool.map(_run_seed, seeds, [rounds] * len(seeds), [exact_up_to] * len(seeds),
                                     [model] * len(seeds)))
    else:
        per_seed = [_run_seed(seed, rounds, exact_up_to, model) for seed in seeds]
    cases: dict[str, dict] = {}
    for runs in per_seed:
        for name, notes, result in runs:
            cases.setdefault(name, {"notes": notes, "runs": []})["runs"].append(result)
    for case in cases.values():
        names = list(case["runs"][0]["institutions"])
        case["per_institution"] = {n: {
            "role": case["runs"][0]["institutions"][n]["role"],
            **{f"{k}_mean": _mean([r["institutions"][n][k] for r in case["runs"]])
               for k in ("payout_share", "reputation", "standalone_accuracy", "rounds_left_out")},
            "payout_share_min": min(r["institutions"][n]["payout_share"] for r in case["runs"]),
            "payout_share_max": max(r["institutions"][n]["payout_share"] for r in case["runs"]),
            "reputation_min": min(r["institutions"][n]["reputation"] for r in case["runs"]),
        } for n in names}
        case["accuracy_mean"] = _mean([r["accuracy"] for r in case["runs"]])
        case["collaborative_fairness"] = _mean([r["collaborative_fairness"] for r in case["runs"]])
    out = {**summarize(cases), "cases": cases, "seeds": list(seeds), "rounds": rounds,
           "protocol": __doc__.split("\n\n", 1)[1].strip(), "command": f"python -m bench.fairness --workers {workers}"
           + (f" --exact-up-to {exact_up_to}" if exact_up_to else "") + (f" --model {model}" if model != "logreg" else ""),
           "exact_up_to": exact_up_to, "model": model,
           "elapsed_seconds": round(time.perf_counter() - started, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--exact-up-to", type=int, default=0,
                        help="the estimator's exact_up_to: exact Shapley with at most this many institutions (0: GTG)")
    parser.add_argument("--model", choices=("logreg", "mlp"), default="logreg",
                        help="the Heart task's model; mlp runs the three Heart cases alone (default out: "
                             "bench/results/fairness_mlp.json)")
    args = parser.parse_args(argv)
    if args.model != "logreg" and args.out == DEFAULT_OUT:
        args.out = DEFAULT_OUT.with_name(f"fairness_{args.model}.json")
    result = run(tuple(args.seeds), args.rounds, args.workers, args.exact_up_to, args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: result[k] for k in SUMMARY_KEYS + ("targets", "elapsed_seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
