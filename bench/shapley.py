"""Contribution-scoring benchmark: Shapley estimators against exact Shapley on real federated rounds.

Run ``.venv/bin/python -m bench.shapley`` (about 8 minutes of two workers on an idle 2-core machine;
20 minutes measured while other jobs kept the load average near 5); writes ``bench/results/shapley.json``
and prints markdown tables. ``make bench-shapley`` runs the same.

Federations are made from real data: the Fed-Heart-Disease training parts of the 4 centers (FLamby's
split) pooled into 486 rows; 25% of those *training* rows are carved off as the validation set the
utility scores on (stratified, normalization refitted on the rest; the test parts are never read). The
remaining 364 rows are dealt to n institutions with quantity skew (sizes ~ Dirichlet(1), at least 2
rows each), and institution k's labels are flipped at a rate from an evenly spaced grid 0..40%, shuffled
among institutions. FedAvg (sample-weighted) trains a logistic regression for 3 rounds (25 local SGD
steps, batch 4, lr 0.03); every round is scored: ``v(S)`` is the validation metric of the global model
plus the FedAvg of ``S``'s updates (``aggregator.scoring.coalition_utility``).

Three phases, on disjoint seeds:

1. Tuning (federation seeds 0-4, n = 6, 8, 10, 12): every coalition's utility is computed once (exact
   Shapley needs them all), then a grid of sampling estimator settings is replayed on that table and
   compared with exact Shapley, for each candidate utility metric. The defaults are chosen here by a
   rule fixed in advance (see ``choose``).
2. Evaluation (held-out federation seeds 2000-2004, n = 6, 8, 10, 12): every estimator, run through
   ``aggregator.scoring.score_round`` with real utility evaluations, against exact Shapley: Spearman and
   Pearson correlation, the largest absolute error relative to ``|v(N) - v(empty)|``, utility
   evaluations and seconds.
3. Scale (seeds 2000-2002, n = 20, 50, 100, round 2 of each run): evaluations and seconds of every
   approximate estimator, and the agreement of two estimator seeds (Spearman) as a precision check
   where exact Shapley is out of reach.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "shapley.json"
COMMAND = ".venv/bin/python -m bench.shapley"

TUNING_SEEDS = (0, 1, 2, 3, 4)
EVALUATION_SEEDS = (2000, 2001, 2002, 2003, 2004)
SCALE_SEEDS = (2000, 2001, 2002)
EXACT_SIZES = (6, 8, 10, 12)
SCALE_SIZES = (20, 50, 100)
ROUNDS = 3
SCALE_ROUND = 2
METRICS = ("neg_loss", "accuracy", "auc")
TARGET_N = 10
TARGET_SPEARMAN = 0.95
TARGET_EVALUATION_SHARE = 0.10
TARGET_SECONDS_AT_100 = 30.0

VALIDATION_FRACTION = 0.25
QUANTITY_ALPHA = 1.0
MIN_ROWS = 2
MAX_LABEL_NOISE = 0.4
TRAINING = {"local_steps": 25, "batch_size": 4, "lr": 0.03, "optimizer": "sgd"}

# Tuning grid of the sampling estimators (fixed before any result was seen). "cycle" and "leader" are
# GTG's guided schemes, "random" is TMC's.
GRID_SAMPLING = ("cycle", "leader", "random")
GRID_TRUNCATION = (0.0, 0.02, 0.05, 0.1)
GRID_CONVERGENCE_SHARE = (0.75, 1.5, 3.0, 6.0, 12.0)


# ---------------------------------------------------------------------------------------------------
# Federations (deterministic functions of n and the seed)
# ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _pooled_training():
    """Pooled training parts of the 4 centers, split into (train rows, validation rows)."""
    from fedsets.data import carve_validation, pool_sites
    from fedsets.heart import load_fed_heart_disease

    pooled = pool_sites(load_fed_heart_disease())
    return carve_validation(pooled, fraction=VALIDATION_FRACTION, seed=0)


def _spec():
    from fedcore.task import TaskSpec, TrainingSettings

    return TaskSpec(
        name="fed-heart-disease-scoring",
        model="logreg",
        feature_columns=_pooled_training().feature_names,
        label_column="num",
        metric="accuracy",
        training=TrainingSettings(**TRAINING),
    )


def institutions(n: int, seed: int):
    """n institutions dealt the pooled training rows with quantity skew and label noise rates 0..40%.

    Returns
    -------
    (list of Institution, list of row-index arrays, np.ndarray of label-noise rates)
    """
    from fedledger.simulation import Institution
    from node.partition import perturb_institutions, quantity_skew_partition, split_by_partition

    data = _pooled_training()
    parts = quantity_skew_partition(data.n_train, n, alpha=QUANTITY_ALPHA, seed=seed, min_size=MIN_ROWS)
    rates = np.random.default_rng([seed, n]).permutation(np.linspace(0.0, MAX_LABEL_NOISE, n))
    datasets = perturb_institutions(
        split_by_partition(data.X_train, data.y_train, parts), label_noise=rates.tolist(), seed=seed
    )
    return [Institution(f"inst{k:03d}", X, y) for k, (X, y) in enumerate(datasets)], parts, rates


def federation(n: int, seed: int) -> dict[str, Any]:
    """n institutions (:func:`institutions`), 3 rounds of FedAvg, every round's inputs."""
    from aggregator.rules import resolve_rules
    from fedledger.simulation import run_simulation

    institutions_, parts, rates = institutions(n, seed)
    result = run_simulation(
        institutions_, _spec(), resolve_rules(strategy="fedavg"), rounds=ROUNDS, seed=seed, evaluate_every_round=False
    )
    sizes = np.array([len(p) for p in parts], dtype=float)
    return {
        "rounds": [
            {"global_weights": r.global_weights, "updates": list(r.updates)}
            for r in result.rounds
        ],
        "sizes": sizes,
        "label_noise": rates,
        # Known data quality: rows carrying label signal (a flipped share r leaves 1 - 2r of it).
        "quality": sizes * (1.0 - 2.0 * rates),
    }


def utility_for(fed_round: dict[str, Any], metric: str):
    from aggregator.scoring import coalition_utility

    data = _pooled_training()
    return coalition_utility(
        global_weights=fed_round["global_weights"],
        updates=fed_round["updates"],
        strategy_name="fedavg",
        strategy_params=None,
        strategy_state=None,
        spec=_spec(),
        X_val=data.X_test,
        y_val=data.y_test,
        utility_metric=metric,
    )


# ---------------------------------------------------------------------------------------------------
# Comparisons with exact Shapley
# ---------------------------------------------------------------------------------------------------


def compare(values: np.ndarray, exact: np.ndarray, total: float) -> dict[str, float]:
    """Spearman, Pearson (NaN when either side is constant) and max |error| / |v(N) - v(empty)|."""
    from aggregator.shapley import pearson, spearman

    relative = float(np.max(np.abs(values - exact)) / abs(total)) if total != 0 else math.nan
    return {"spearman": spearman(values, exact), "pearson": pearson(values, exact), "max_relative_error": relative}


def grid_configs() -> list[tuple[str, float, float]]:
    return list(itertools.product(GRID_SAMPLING, GRID_TRUNCATION, GRID_CONVERGENCE_SHARE))


def config_name(config: tuple[str, float, float]) -> str:
    sampling, truncation, share = config
    return f"sampling={sampling},truncation_tolerance={truncation},convergence_share={share}"


def tuning_job(n: int, seed: int) -> dict[str, Any]:
    """Exact tables of every round and metric, and the grid replayed on them."""
    from aggregator.shapley import CachedUtility, exact_shapley, gtg_shapley, normalize_estimate, spearman

    fed = federation(n, seed)
    out: dict[str, Any] = {"n": n, "seed": seed, "metrics": {}}
    for metric in METRICS:
        cumulative = np.zeros(n)
        rows: dict[str, list[dict[str, float]]] = {config_name(c): [] for c in grid_configs()}
        flat_rounds, tied_pairs = 0, []
        for index, fed_round in enumerate(fed["rounds"]):
            cache = CachedUtility(utility_for(fed_round, metric), n=n)
            exact = exact_shapley(n, cache)
            table = dict(cache._values)  # every coalition: the grid below reads, never evaluates
            cumulative += exact.values
            total = exact.total
            flat_rounds += int(total == 0)
            tied_pairs.append(float(np.mean([a == b for a, b in itertools.combinations(exact.values, 2)])))

            def lookup(coalition, table=table):
                return table[coalition]

            for config in grid_configs():
                sampling, truncation, share = config
                estimate = gtg_shapley(
                    n,
                    lookup,
                    seed=seed * 1000 + index,
                    sampling=sampling,
                    truncation_tolerance=truncation,
                    convergence_tolerance=share / n,
                    round_truncation_threshold=0.0,
                )
                values = normalize_estimate(estimate).values
                rows[config_name(config)].append({**compare(values, exact.values, total), "evaluations": estimate.evaluations})
        out["metrics"][metric] = {
            "grid": rows,
            "signal_spearman": spearman(cumulative, fed["quality"]),
            "noise_signal_spearman": spearman(cumulative, -fed["label_noise"]),
            "quantity_signal_spearman": spearman(cumulative, fed["sizes"]),
            "flat_rounds": flat_rounds,
            "tied_pairs_share": float(np.mean(tied_pairs)),
        }
    return out


def evaluation_job(n: int, seed: int, estimators: dict[str, tuple[str, dict]]) -> dict[str, Any]:
    """Every estimator through score_round (real evaluations), against exact, for every metric."""
    from aggregator.scoring import score_round
    from aggregator.shapley import spearman

    data = _pooled_training()
    fed = federation(n, seed)
    out: dict[str, Any] = {"n": n, "seed": seed, "metrics": {}}
    for metric in METRICS:
        per_estimator: dict[str, list[dict[str, float]]] = {name: [] for name in estimators}
        signal_parts: dict[str, np.ndarray] = {name: np.zeros(n) for name in estimators}
        for index, fed_round in enumerate(fed["rounds"]):
            scores, cpu = {}, {}
            for name, (estimator, params) in estimators.items():
                cpu_start = time.process_time()
                scores[name] = score_round(
                    global_weights=fed_round["global_weights"],
                    updates=fed_round["updates"],
                    strategy_name="fedavg",
                    strategy_params=None,
                    strategy_state=None,
                    spec=_spec(),
                    X_val=data.X_test,
                    y_val=data.y_test,
                    estimator=estimator,
                    estimator_params=params,
                    seed=seed * 1000 + index,
                    utility_metric=metric,
                )
                cpu[name] = time.process_time() - cpu_start
            exact = np.array(list(scores["exact"].values.values()))
            total = scores["exact"].total
            for name, result in scores.items():
                values = np.array(list(result.values.values()))
                signal_parts[name] += values
                per_estimator[name].append(
                    {
                        **compare(values, exact, total),
                        "evaluations": result.evaluations,
                        "seconds": result.seconds,
                        "cpu_seconds": cpu[name],
                    }
                )
        out["metrics"][metric] = {
            "rows": per_estimator,
            "signal_spearman": {name: spearman(v, fed["quality"]) for name, v in signal_parts.items()},
            "noise_signal_spearman": {name: spearman(v, -fed["label_noise"]) for name, v in signal_parts.items()},
            "quantity_signal_spearman": {name: spearman(v, fed["sizes"]) for name, v in signal_parts.items()},
        }
    return out


def scale_job(n: int, seed: int, estimators: dict[str, tuple[str, dict]], metric: str) -> dict[str, Any]:
    """Approximate estimators at large n: evaluations, seconds, agreement of two estimator seeds."""
    from aggregator.scoring import score_round
    from aggregator.shapley import spearman

    data = _pooled_training()
    fed = federation(n, seed)
    fed_round = fed["rounds"][SCALE_ROUND - 1]
    out: dict[str, Any] = {"n": n, "seed": seed, "rows": {}}
    for name, (estimator, params) in estimators.items():
        runs, cpu = [], []
        estimator_seeds = (seed * 1000 + 1,) if name in SCALE_SINGLE_RUN else (seed * 1000 + 1, seed * 1000 + 2)
        for estimator_seed in estimator_seeds:
            cpu_start = time.process_time()
            runs.append(
                score_round(
                    global_weights=fed_round["global_weights"],
                    updates=fed_round["updates"],
                    strategy_name="fedavg",
                    strategy_params=None,
                    strategy_state=None,
                    spec=_spec(),
                    X_val=data.X_test,
                    y_val=data.y_test,
                    estimator=estimator,
                    estimator_params=params,
                    seed=estimator_seed,
                    utility_metric=metric,
                )
            )
            cpu.append(time.process_time() - cpu_start)
        a, b = (np.array(list(r.values.values())) for r in (runs[0], runs[-1]))
        out["rows"][name] = {
            "evaluations": [r.evaluations for r in runs],
            "seconds": [r.seconds for r in runs],
            "cpu_seconds": cpu,
            "converged": [r.converged for r in runs],
            "seed_agreement_spearman": spearman(a, b) if len(runs) == 2 else math.nan,
            "signal_spearman": spearman(a, fed["quality"]),
        }
    return out


#: Run once per federation at n >= 20 (deterministic, or too slow to run twice: plain MC needs about
#: 97,000 evaluations at n = 100). Their seed agreement is not measured.
SCALE_SINGLE_RUN = frozenset({"loo", "gain", "alignment", "mc"})


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    if job["kind"] == "tuning":
        return tuning_job(job["n"], job["seed"])
    if job["kind"] == "evaluation":
        return evaluation_job(job["n"], job["seed"], job["estimators"])
    return scale_job(job["n"], job["seed"], job["estimators"], job["metric"])


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_jobs(jobs: list[dict[str, Any]], workers: int, label: str) -> list[dict[str, Any]]:
    """Run jobs on a process pool with a progress bar; results in job order."""
    from tqdm import tqdm

    results: list[dict[str, Any] | None] = [None] * len(jobs)
    if workers <= 1:
        _init_worker()
        for i, job in enumerate(tqdm(jobs, desc=label, unit="job", file=sys.stderr)):
            results[i] = run_job(job)
        return results  # type: ignore[return-value]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for future in tqdm(as_completed(futures), total=len(jobs), desc=label, unit="job", file=sys.stderr):
            results[futures[future]] = future.result()
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------
# Summaries and the choice of defaults
# ---------------------------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 4) -> dict[str, Any]:
    """mean, std (ddof=0), min, max over the defined values, and how many were undefined (NaN)."""
    array = np.asarray(values, dtype=np.float64)
    defined = array[np.isfinite(array)]
    if defined.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "cases": int(array.size), "undefined": int(array.size)}
    return {
        "mean": round(float(defined.mean()), digits),
        "std": round(float(defined.std()), digits),
        "min": round(float(defined.min()), digits),
        "max": round(float(defined.max()), digits),
        "cases": int(array.size),
        "undefined": int(array.size - defined.size),
    }


def summarize_rows(rows: list[dict[str, float]], n: int) -> dict[str, Any]:
    entry = {
        "spearman": spread([r["spearman"] for r in rows]),
        "pearson": spread([r["pearson"] for r in rows]),
        "max_relative_error": spread([r["max_relative_error"] for r in rows]),
        "evaluations": spread([r["evaluations"] for r in rows], 1),
        "evaluations_share_of_exact": round(float(np.mean([r["evaluations"] for r in rows])) / 2**n, 4),
    }
    if "seconds" in rows[0]:
        entry["seconds"] = spread([r["seconds"] for r in rows])
        entry["cpu_seconds"] = spread([r["cpu_seconds"] for r in rows])
    return entry


def choose(tuning: list[dict[str, Any]]) -> dict[str, Any]:
    """The defaults, by a rule fixed before any result was seen.

    For each metric and each family (GTG: guided sampling "cycle" or "leader"; TMC: "random"), keep the
    settings whose evaluations at n = 10 never exceed 10% of exact's 1,024 on any tuning case (if none
    does: whose mean does; if none: the cheapest), and take the one with the highest mean Spearman
    against exact at n = 10 (then the highest mean Spearman over all n, then the fewest mean evaluations
    at n = 10). The utility metric is the one whose chosen GTG
    agrees best with its own exact Shapley at n = 10 (the estimate is what gets paid); the metrics'
    signal (agreement of exact values with the known data quality) is reported beside it. The default
    estimator is the family with the higher Spearman at n = 10 under that metric.
    """
    budget = TARGET_EVALUATION_SHARE * 2**TARGET_N
    sizes = sorted({job["n"] for job in tuning})
    per_metric: dict[str, Any] = {}
    for metric in METRICS:
        families: dict[str, Any] = {}
        for family, samplings in (("gtg", ("cycle", "leader")), ("tmc", ("random",))):
            candidates = []
            for config in grid_configs():
                if config[0] not in samplings:
                    continue
                name = config_name(config)
                by_n = {n: [r for job in tuning if job["n"] == n for r in job["metrics"][metric]["grid"][name]] for n in sizes}
                at_target = by_n[TARGET_N]
                max_evaluations = max(r["evaluations"] for r in at_target)
                spearman_target = float(np.nanmean([r["spearman"] for r in at_target]))
                spearman_all = float(np.nanmean([r["spearman"] for rows in by_n.values() for r in rows]))
                mean_evaluations = float(np.mean([r["evaluations"] for r in at_target]))
                candidates.append(
                    {
                        "config": config,
                        "within_budget": max_evaluations <= budget,
                        "spearman_at_10": spearman_target,
                        "spearman_all_n": spearman_all,
                        "evaluations_at_10_mean": mean_evaluations,
                        "evaluations_at_10_max": max_evaluations,
                    }
                )
            eligible = (
                [c for c in candidates if c["within_budget"]]
                or [c for c in candidates if c["evaluations_at_10_mean"] <= budget]
                or [min(candidates, key=lambda c: c["evaluations_at_10_mean"])]
            )
            best = max(eligible, key=lambda c: (c["spearman_at_10"], c["spearman_all_n"], -c["evaluations_at_10_mean"]))
            families[family] = {
                "params": params_of(best["config"]),
                "within_budget": best["within_budget"],
                "spearman_at_10": round(best["spearman_at_10"], 4),
                "spearman_all_n": round(best["spearman_all_n"], 4),
                "evaluations_at_10_mean": round(best["evaluations_at_10_mean"], 1),
                "evaluations_at_10_max": best["evaluations_at_10_max"],
                "candidates_within_budget": sum(c["within_budget"] for c in candidates),
                "candidates": len(candidates),
            }
        per_metric[metric] = families
    metric = max(METRICS, key=lambda m: (per_metric[m]["gtg"]["within_budget"], per_metric[m]["gtg"]["spearman_at_10"]))
    family = max(("gtg", "tmc"), key=lambda f: (per_metric[metric][f]["within_budget"], per_metric[metric][f]["spearman_at_10"]))
    return {
        "utility_metric": metric,
        "estimator": family,
        "estimator_params": per_metric[metric][family]["params"],
        "gtg_params": per_metric[metric]["gtg"]["params"],
        "tmc_params": per_metric[metric]["tmc"]["params"],
        "per_metric": per_metric,
    }


def params_of(config: tuple[str, float, float]) -> dict[str, Any]:
    sampling, truncation, share = config
    return {"sampling": sampling, "truncation_tolerance": truncation, "convergence_share": share}


def library_defaults(name: str) -> dict[str, Any]:
    """Every keyword default of an estimator function as shapley.py ships it (overrides scoring's)."""
    from aggregator.shapley import ESTIMATORS

    signature = inspect.signature(ESTIMATORS[name])
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "seed" and p.default is not inspect.Parameter.empty
    }


def estimator_table(choice: dict[str, Any]) -> dict[str, tuple[str, dict]]:
    """Display name -> (estimator, explicit parameters) for the evaluation and scale phases."""
    gtg, tmc = dict(choice["gtg_params"]), dict(choice["tmc_params"])
    return {
        "exact": ("exact", {}),
        "gtg": ("gtg", gtg),
        "gtg_leader": ("gtg", {**gtg, "sampling": "leader"}),
        "gtg_library_defaults": ("gtg", library_defaults("gtg")),
        "tmc": ("tmc", tmc),
        "tmc_library_defaults": ("tmc", library_defaults("tmc")),
        "mc": ("mc", library_defaults("mc")),
        "loo": ("loo", {}),
        "gain": ("gain", {}),
        "alignment": ("alignment", {}),
    }


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shapley", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default: up to 2)")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help=f"output JSON (default {RESULTS_PATH})")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer seeds and sizes (not for the results file)")
    parser.add_argument("--reuse-scale", type=Path, metavar="FILE",
                        help="skip phase 3 (n = 20, 50, 100: hours on a busy machine) and copy its table from an earlier "
                        "results FILE; the report says so under scale_reused_from")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tuning_seeds, evaluation_seeds, scale_seeds = TUNING_SEEDS, EVALUATION_SEEDS, SCALE_SEEDS
    exact_sizes, scale_sizes = EXACT_SIZES, SCALE_SIZES
    if args.quick:
        tuning_seeds, evaluation_seeds, scale_seeds = TUNING_SEEDS[:2], EVALUATION_SEEDS[:1], SCALE_SEEDS[:1]
        exact_sizes, scale_sizes = (6, TARGET_N), (20, 100)

    # 1. tuning
    tuning_jobs = [{"kind": "tuning", "n": n, "seed": s} for n in reversed(exact_sizes) for s in tuning_seeds]
    phase_seconds: dict[str, float] = {}
    tuning = run_jobs(tuning_jobs, args.workers, "1/3 tuning (exact tables, grid)")
    phase_seconds["tuning"] = round(time.perf_counter() - started, 1)
    choice = choose(tuning)
    estimators = estimator_table(choice)

    # 2. evaluation on held-out seeds, real evaluations; 3. scale
    evaluation_jobs = [
        {"kind": "evaluation", "n": n, "seed": s, "estimators": estimators} for n in reversed(exact_sizes) for s in evaluation_seeds
    ]
    evaluation = run_jobs(evaluation_jobs, args.workers, "2/3 held-out seeds vs exact")
    phase_seconds["evaluation"] = round(time.perf_counter() - started - sum(phase_seconds.values()), 1)
    approximate = {k: v for k, v in estimators.items() if k != "exact"}
    scale_jobs = [
        {"kind": "scale", "n": n, "seed": s, "estimators": approximate, "metric": choice["utility_metric"]}
        for n in reversed(scale_sizes)
        for s in scale_seeds
    ]
    if args.reuse_scale is None:
        scale = run_jobs(scale_jobs, args.workers, "3/3 n = 20, 50, 100")
        phase_seconds["scale"] = round(time.perf_counter() - started - sum(phase_seconds.values()), 1)
        scale_table, seeds_of_scale = scale_section(scale), sorted({j["seed"] for j in scale})
        reused = None
    else:
        earlier = json.loads(args.reuse_scale.read_text())
        scale_table, seeds_of_scale = earlier["scale"], earlier["protocol"]["scale_seeds"]
        reused = {"file": str(args.reuse_scale), "phase_seconds": earlier.get("phase_seconds")}

    report = build_report(choice, tuning, evaluation, scale_table, seeds_of_scale, estimators)
    if reused is not None:
        report["scale_reused_from"] = reused
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    report["phase_seconds"] = phase_seconds
    report["environment"] = {
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _torch_version(),
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(jsonable(report), indent=2) + "\n")
    print(markdown(report))
    print(f"\nwrote {args.out} in {report['elapsed_seconds']} s")
    return 0


def scale_section(scale: list[dict[str, Any]]) -> dict[str, Any]:
    """Phase 3's table: cost and agreement of each approximate estimator at n = 20, 50, 100."""
    scale_sizes = sorted({j["n"] for j in scale})
    scale_table: dict[str, Any] = {}
    for n in scale_sizes:
        jobs = [j for j in scale if j["n"] == n]
        scale_table[f"n={n}"] = {
            name: {
                "evaluations": spread([e for j in jobs for e in j["rows"][name]["evaluations"]], 1),
                "seconds": spread([s for j in jobs for s in j["rows"][name]["seconds"]], 3),
                "cpu_seconds": spread([s for j in jobs for s in j["rows"][name]["cpu_seconds"]], 3),
                "converged_share": round(float(np.mean([c for j in jobs for c in j["rows"][name]["converged"]])), 3),
                "seed_agreement_spearman": spread([j["rows"][name]["seed_agreement_spearman"] for j in jobs]),
                "signal_spearman": spread([j["rows"][name]["signal_spearman"] for j in jobs]),
            }
            for name in jobs[0]["rows"]
        }

    return scale_table


def build_report(choice, tuning, evaluation, scale_table, scale_seeds, estimators) -> dict[str, Any]:
    from aggregator import scoring

    metric = choice["utility_metric"]
    exact_sizes = sorted({j["n"] for j in evaluation})
    tuning_sizes = sorted({j["n"] for j in tuning})
    by_metric: dict[str, Any] = {}
    for m in METRICS:
        table: dict[str, Any] = {}
        for n in exact_sizes:
            jobs = [j for j in evaluation if j["n"] == n]
            table[f"n={n}"] = {
                "exact_evaluations": 2**n,
                **{
                    name: {
                        **summarize_rows([r for j in jobs for r in j["metrics"][m]["rows"][name]], n),
                        "signal_spearman": spread([j["metrics"][m]["signal_spearman"][name] for j in jobs]),
                        "noise_signal_spearman": spread([j["metrics"][m]["noise_signal_spearman"][name] for j in jobs]),
                        "quantity_signal_spearman": spread([j["metrics"][m]["quantity_signal_spearman"][name] for j in jobs]),
                    }
                    for name in estimators
                },
            }
        by_metric[m] = table
    exact_comparison = by_metric[metric]

    utility_metrics: dict[str, Any] = {}
    for m in METRICS:
        utility_metrics[m] = {
            "tuning_chosen_gtg": choice["per_metric"][m]["gtg"],
            "tuning_chosen_tmc": choice["per_metric"][m]["tmc"],
            "tuning_exact_signal_spearman": spread([j["metrics"][m]["signal_spearman"] for j in tuning]),
            "tuning_exact_noise_signal_spearman": spread([j["metrics"][m]["noise_signal_spearman"] for j in tuning]),
            "tuning_exact_quantity_signal_spearman": spread([j["metrics"][m]["quantity_signal_spearman"] for j in tuning]),
            "tuning_flat_rounds_share": round(
                sum(j["metrics"][m]["flat_rounds"] for j in tuning) / (len(tuning) * ROUNDS), 4
            ),
            "tuning_tied_pairs_share": round(float(np.mean([j["metrics"][m]["tied_pairs_share"] for j in tuning])), 4),
            "held_out_gtg_spearman_at_10": by_metric[m][f"n={TARGET_N}"]["gtg"]["spearman"],
            "held_out_gtg_evaluations_at_10": by_metric[m][f"n={TARGET_N}"]["gtg"]["evaluations"],
            "held_out_exact_signal_spearman_at_10": by_metric[m][f"n={TARGET_N}"]["exact"]["signal_spearman"],
            "held_out_exact_noise_signal_spearman_at_10": by_metric[m][f"n={TARGET_N}"]["exact"]["noise_signal_spearman"],
        }

    tuning_grid: dict[str, Any] = {}
    for m in METRICS:
        tuning_grid[m] = {}
        for config in grid_configs():
            name = config_name(config)
            tuning_grid[m][name] = {
                f"n={n}": {
                    "spearman_mean": round(float(np.nanmean([r["spearman"] for j in tuning if j["n"] == n for r in j["metrics"][m]["grid"][name]])), 4),
                    "evaluations_mean": round(float(np.mean([r["evaluations"] for j in tuning if j["n"] == n for r in j["metrics"][m]["grid"][name]])), 1),
                    "evaluations_max": int(max(r["evaluations"] for j in tuning if j["n"] == n for r in j["metrics"][m]["grid"][name])),
                }
                for n in tuning_sizes
            }

    at_target = exact_comparison[f"n={TARGET_N}"][choice["estimator"]]
    budget = TARGET_EVALUATION_SHARE * 2**TARGET_N
    largest_scale = max(scale_table, key=lambda key: int(key.split("=")[1]))
    seconds_100 = scale_table[largest_scale][choice["estimator"]]["seconds"]
    module_defaults = {
        "utility_metric": scoring.DEFAULT_UTILITY_METRIC,
        "estimator": scoring.DEFAULT_ESTIMATOR,
        "estimator_params": dict(scoring.DEFAULT_ESTIMATOR_PARAMS.get(scoring.DEFAULT_ESTIMATOR, {})),
    }
    return {
        "benchmark": "Shapley estimators vs exact Shapley on real federated rounds (Fed-Heart-Disease, logistic regression, FedAvg)",
        "command": COMMAND,
        "protocol": {
            "data": "Fed-Heart-Disease (FLamby split): the 4 centers' training parts pooled (486 rows); 25% of them carved off "
            "as the validation set (122 rows, stratified, normalization refitted on the other 364); the test parts are never read",
            "institutions": f"the 364 rows dealt to n institutions with quantity skew (Dirichlet({QUANTITY_ALPHA}) sizes, at least "
            f"{MIN_ROWS} rows) and label noise (rates evenly spaced 0..{MAX_LABEL_NOISE:.0%}, shuffled among institutions)",
            "training": f"FedAvg (sample-weighted), logistic regression, {ROUNDS} rounds of {TRAINING['local_steps']} local SGD steps, "
            f"batch {TRAINING['batch_size']}, lr {TRAINING['lr']}; every round scored (n <= 12), round {SCALE_ROUND} at n >= 20",
            "utility": "v(S) = validation metric of the global model plus the FedAvg of S's updates; v(empty) = the global model",
            "values_compared": "values normalized to sum to v(N) - v(empty), as score_round posts them",
            "tuning_seeds": sorted({j["seed"] for j in tuning}),
            "evaluation_seeds": sorted({j["seed"] for j in evaluation}),
            "scale_seeds": scale_seeds,
            "seeds": "a federation seed fixes the partition, the label noise, the initial model and the training; estimator seed = "
            "federation seed * 1000 + round index (scale phase: * 1000 + 1 and + 2)",
            "spread": "mean, population std (ddof=0), min and max over cases (federation seed x round), NaN cases counted in "
            "'undefined' (a correlation with a constant vector, a relative error with v(N) = v(empty))",
            "quality_proxy": "institution rows x (1 - 2 x label-noise rate): rows carrying label signal",
            "grid": {
                "sampling": list(GRID_SAMPLING),
                "truncation_tolerance": list(GRID_TRUNCATION),
                "convergence_share": list(GRID_CONVERGENCE_SHARE),
                "fixed": "min_permutations 10, max_permutations 1000, round_truncation_threshold 0 while tuning",
            },
        },
        "choice": {
            "utility_metric": metric,
            "estimator": choice["estimator"],
            "estimator_params": choice["estimator_params"],
            "gtg_params": choice["gtg_params"],
            "tmc_params": choice["tmc_params"],
            "tmc_params_role": "TMC (random permutations) chosen by the same rule, for the side-by-side rows named 'tmc'; "
            "the scoring module keeps shapley.py's own defaults for 'tmc' (rows 'tmc_library_defaults')",
            "chosen_on": f"tuning seeds {sorted({j['seed'] for j in tuning})} (exact tables), never the evaluation seeds",
            "rule": inspect.getdoc(choose).split("\n\n", 1)[1].replace("\n", " "),
            "scoring_module_defaults": module_defaults,
            "scoring_module_defaults_match": module_defaults["utility_metric"] in (metric,)
            and module_defaults["estimator"] == choice["estimator"]
            and module_defaults["estimator_params"] == choice["estimator_params"],
        },
        "targets": {
            "spearman_at_10": {
                "target": f"the default estimator at n = {TARGET_N}: mean Spearman >= {TARGET_SPEARMAN} against exact with at most "
                f"{TARGET_EVALUATION_SHARE:.0%} of exact's {2**TARGET_N} evaluations ({budget:.0f}) in every case",
                "estimator": choice["estimator"],
                "spearman_mean": at_target["spearman"]["mean"],
                "spearman_min": at_target["spearman"]["min"],
                "evaluations_max": at_target["evaluations"]["max"],
                "met": bool(
                    at_target["spearman"]["mean"] is not None
                    and at_target["spearman"]["mean"] >= TARGET_SPEARMAN
                    and at_target["evaluations"]["max"] <= budget
                ),
            },
            "seconds_at_100": {
                "target": f"a round of 100 institutions scored by the default estimator in at most {TARGET_SECONDS_AT_100:.0f} s",
                "seconds_max": seconds_100["max"],
                "cpu_seconds_max": scale_table[largest_scale][choice["estimator"]]["cpu_seconds"]["max"],
                "met": bool(seconds_100["max"] <= TARGET_SECONDS_AT_100),
            },
        },
        "exact_comparison": exact_comparison,
        "scale": scale_table,
        "utility_metrics": utility_metrics,
        "exact_comparison_by_metric": by_metric,
        "tuning_grid": tuning_grid,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"utility metric: {report['choice']['utility_metric']}; default estimator: {report['choice']['estimator']} "
        f"{report['choice']['estimator_params']}",
        "",
        "| n | estimator | Spearman mean | Spearman min | Pearson mean | max rel. error (mean / max) | evaluations (mean / max) | seconds (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in report["exact_comparison"].items():
        for name, entry in row.items():
            if name == "exact_evaluations":
                continue
            s, p, e, ev, sec = entry["spearman"], entry["pearson"], entry["max_relative_error"], entry["evaluations"], entry["seconds"]
            lines.append(
                f"| {key[2:]} | {name} | {s['mean']} | {s['min']} | {p['mean']} | {e['mean']} / {e['max']} | "
                f"{ev['mean']} / {ev['max']} | {sec['mean']} |"
            )
    lines += [
        "",
        "| n | estimator | evaluations (mean / max) | seconds (mean / max) | CPU seconds (mean / max) | seed agreement (Spearman mean / min) |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in report["scale"].items():
        for name, entry in row.items():
            ev, sec, cpu, agree = entry["evaluations"], entry["seconds"], entry["cpu_seconds"], entry["seed_agreement_spearman"]
            lines.append(
                f"| {key[2:]} | {name} | {ev['mean']} / {ev['max']} | {sec['mean']} / {sec['max']} | {cpu['mean']} / {cpu['max']} | "
                f"{agree['mean']} / {agree['min']} |"
            )
    lines += [
        "",
        "| utility metric | tuned GTG Spearman at 10 (tuning seeds) | GTG Spearman at 10 (held-out mean / min) | "
        "exact vs quality (tuning / held-out n=10) | exact vs -label noise (tuning / held-out n=10) | flat rounds | tied pairs |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, entry in report["utility_metrics"].items():
        held = entry["held_out_gtg_spearman_at_10"]
        lines.append(
            f"| {m} | {entry['tuning_chosen_gtg']['spearman_at_10']} | {held['mean']} / {held['min']} | "
            f"{entry['tuning_exact_signal_spearman']['mean']} / {entry['held_out_exact_signal_spearman_at_10']['mean']} | "
            f"{entry['tuning_exact_noise_signal_spearman']['mean']} / {entry['held_out_exact_noise_signal_spearman_at_10']['mean']} | "
            f"{entry['tuning_flat_rounds_share']} | {entry['tuning_tied_pairs_share']} |"
        )
    return "\n".join(lines)


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    raise SystemExit(main())
