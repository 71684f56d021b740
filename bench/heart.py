"""Fed-Heart-Disease benchmark: pooled, local-only and federated training on FLamby's split.

Run ``.venv/bin/python -m bench.heart`` (a few minutes on 2 cores); writes
``bench/results/heart.json`` and prints a markdown table.

What it measures, for seeds 42-46 (each seed fixes the initial model and all shuffling):

* pooled training and local-only training per center, with FLamby's settings (logistic regression,
  BCE, Adam lr 1e-3, batch 4, 50 epochs);
* every strategy with FLamby's settings (15 rounds of 100 local SGD steps, batch 4, the per-strategy
  learning rates of FLamby's ``config_heart_disease.json``; robust rules, which FLamby does not
  have, use FedAvg's settings);
* every strategy with settings tuned here: client lr, local steps, server lr (FedAdam/Yogi/Adagrad),
  mu (FedProx), chosen on validation parts carved from each center's *training* part (never the test
  parts), then retrained on the full training parts and tested once.

Metrics: accuracy (threshold 0.5) on each center's test part and their mean ("mean over centers"),
and accuracy on the pooled test set scaled with the pooled training statistics (FLamby's
``pooled=True`` test set, the bracketed figure of FLamby's table).
"""

from __future__ import annotations

import argparse
import json
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

from fedsets.heart import (  # noqa: F401 (bench.heart's names)
    BATCH_SIZE,
    FLAMBY_OPT,
    FLAMBY_SETTINGS,
    LOCAL_STEPS,
    PERSONAL_MLP,
    PERSONAL_MLP_TRAINING,
    ROUNDS,
)

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "heart.json"

SEEDS = (42, 43, 44, 45, 46)
CENTRALIZED_EPOCHS = 50
CENTRALIZED_LR = 1e-3

# Tuning: validation = 25% of each center's training part (stratified like FLamby's split), five
# different carvings, two training seeds each; none of these seeds is an evaluation seed.
VALIDATION_FRACTION = 0.25
TUNING_SPLIT_SEEDS = (0, 1, 2, 3, 4)
TUNING_TRAIN_SEEDS = (0, 1)

# What a user can tune, per strategy: grids fixed before looking at any result.
CLIENT_LRS = (0.001, 0.003, 0.01, 0.03, 0.1)


def tuning_grid() -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Per strategy: (strategy kwargs, client training) candidates. 15 rounds stay fixed (the
    communication budget); everything else a user could set is on the grid."""
    grid: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    grid["fedavg"] = [({}, {"lr": lr, "local_steps": steps}) for steps in (25, 100, 200) for lr in CLIENT_LRS]
    grid["fedprox"] = [
        ({"mu": mu}, {"lr": lr, "local_steps": steps})
        for mu in (0.01, 0.1, 1.0)
        for steps in (100, 200)
        for lr in (0.003, 0.01, 0.03, 0.1)
    ]
    for name, server_lrs in (
        ("fedadam", (0.003, 0.01, 0.03, 0.1)),
        ("fedyogi", (0.003, 0.01, 0.03, 0.1)),
        ("fedadagrad", (0.03, 0.1, 0.3, 1.0)),
    ):
        grid[name] = [
            ({"server_lr": slr, **FLAMBY_OPT}, {"lr": lr, "local_steps": steps})
            for steps in (25, 100)
            for slr in server_lrs
            for lr in (0.003, 0.01, 0.03)
        ]
    for name in ("median", "trimmed_mean", "krum", "multikrum"):
        kwargs = dict(FLAMBY_SETTINGS[name][0])
        grid[name] = [(kwargs, {"lr": lr, "local_steps": steps}) for steps in (25, 100, 200) for lr in (0.003, 0.01, 0.03, 0.1)]
    return grid


FLAMBY_PUBLISHED = {
    "source": "FLamby results files heart_seed42..46.csv (2022), as summarized in the data README",
    "pooled": {"mean_center_test_accuracy": 0.735, "pooled_test_accuracy": 0.795},
    "local_mean_center_test_accuracy": {"cleveland": 0.722, "hungarian": 0.629, "switzerland": 0.567, "va": 0.637},
    "fedavg": {"mean_center_test_accuracy": 0.685, "pooled_test_accuracy": 0.748},
    "fedprox": {"mean_center_test_accuracy": 0.685, "pooled_test_accuracy": 0.748},
    "scaffold": {"mean_center_test_accuracy": 0.684, "pooled_test_accuracy": 0.748},
    "fedadam": {"mean_center_test_accuracy": 0.726, "pooled_test_accuracy": 0.779},
    "fedyogi": {"mean_center_test_accuracy": 0.731, "pooled_test_accuracy": 0.779},
    "fedadagrad": {"mean_center_test_accuracy": 0.731, "pooled_test_accuracy": 0.779},
    "cyclic": {"mean_center_test_accuracy": 0.718, "pooled_test_accuracy": 0.785},
}


# ---------------------------------------------------------------------------------------------
# Jobs (run in worker processes; each is a deterministic function of its description)


@lru_cache(maxsize=1)
def _sites():
    from fedsets.heart import load_fed_heart_disease

    return tuple(load_fed_heart_disease())


@lru_cache(maxsize=8)
def _split(split: str, split_seed: int):
    """(institutions, extra evaluation sets) for the test protocol or one validation carving."""
    from fedledger.simulation import Institution
    from fedsets.data import carve_validation, pool_sites

    sites = _sites()
    if split == "test":
        pooled = pool_sites(sites)
        return tuple(Institution.from_site(s) for s in sites), {"pooled_test": (pooled.X_test, pooled.y_test)}, pooled
    carved = [carve_validation(s, fraction=VALIDATION_FRACTION, seed=split_seed) for s in sites]
    return tuple(Institution.from_site(s) for s in carved), {}, None


def _spec(training: dict[str, Any]):
    from fedcore.task import TaskSpec, TrainingSettings

    settings = {"local_steps": LOCAL_STEPS, "batch_size": BATCH_SIZE, "lr": 0.001, "optimizer": "sgd", **training}
    if settings.get("local_epochs") is not None:
        settings["local_steps"] = None
    return TaskSpec(
        name="fed-heart-disease",
        model="logreg",
        feature_columns=_sites()[0].feature_names,
        label_column="num",
        metric="accuracy",
        training=TrainingSettings(**settings),
    )


def _summary(evaluation: dict) -> dict[str, Any]:
    out = {
        "mean_center_accuracy": evaluation["mean_center"]["accuracy"],
        "mean_center_loss": evaluation["mean_center"]["loss"],
        "all_test_rows_accuracy": evaluation["all_test_rows"]["accuracy"],
        "center_accuracy": {name: m["accuracy"] for name, m in evaluation["centers"].items()},
    }
    if "pooled_test" in evaluation:
        out["pooled_test_accuracy"] = evaluation["pooled_test"]["accuracy"]
    return out


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Execute one job description (see :func:`plan_jobs`) and return its metrics."""
    import torch

    from aggregator.rules import resolve_rules
    from fedledger.simulation import evaluate_federation, run_simulation, train_centralized

    torch.set_num_threads(1)
    if job["kind"].startswith("personal"):
        return run_personal_job(job)
    institutions, extra, pooled = _split(job["split"], job.get("split_seed", 0))
    if job["kind"] in ("pooled", "local"):
        spec = _spec({"local_epochs": CENTRALIZED_EPOCHS, "optimizer": "adam", "lr": CENTRALIZED_LR})
        if job["kind"] == "pooled":
            X, y = pooled.X_train, pooled.y_train
        else:
            center = next(i for i in institutions if i.name == job["center"])
            X, y = center.X_train, center.y_train
        weights = train_centralized(X, y, spec, seed=job["seed"])
        return _summary(evaluate_federation(spec, weights, institutions, extra))
    rules = resolve_rules(strategy=job["strategy"], strategy_params={"fit_config": job["training"], **job["strategy_kwargs"]})
    result = run_simulation(
        institutions,
        _spec(job["training"]),
        rules,
        rounds=ROUNDS,
        seed=job["seed"],
        extra_eval_sets=extra,
        keep_records=False,
        evaluate_every_round=False,
    )
    return _summary(result.final)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


# ``--cache FILE``: every finished job's result is appended there (one JSON line) and reused by a later run, so an
# interrupted run on a busy machine resumes where it stopped. Jobs are deterministic functions of their description.
JOB_CACHE: Path | None = None


def _cached() -> dict[str, Any]:
    if JOB_CACHE is None or not JOB_CACHE.exists():
        return {}
    lines = [json.loads(line) for line in JOB_CACHE.read_text().splitlines() if line.strip()]
    return {line["job"]: line["result"] for line in lines}


def _remember(key: str, result: dict[str, Any]) -> None:
    if JOB_CACHE is not None:
        with JOB_CACHE.open("a") as cache:
            cache.write(json.dumps({"job": key, "result": result}) + "\n")


def run_jobs(jobs: list[dict[str, Any]], workers: int, label: str, runner=None) -> list[dict[str, Any]]:
    """Run jobs (``runner(job)``, default :func:`run_job`) on a process pool with a progress bar; results in job order.
    With :data:`JOB_CACHE` set, jobs found there are not run again."""
    from tqdm import tqdm

    runner = run_job if runner is None else runner
    cached = _cached()
    results: list[dict[str, Any] | None] = [cached.get(_job_key(job)) for job in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    if workers <= 1:
        for i in tqdm(todo, desc=label, unit="run", file=sys.stderr):
            results[i] = runner(jobs[i])
            _remember(_job_key(jobs[i]), results[i])  # type: ignore[arg-type]
        return results  # type: ignore[return-value]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(runner, jobs[i]): i for i in todo}
        for future in tqdm(as_completed(futures), total=len(todo), desc=label, unit="run", file=sys.stderr):
            i = futures[future]
            results[i] = future.result()
            _remember(_job_key(jobs[i]), results[i])  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Planning and reporting


def _spread(values: list[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(array.mean()), 4), "std": round(float(array.std()), 4), "per_seed": [round(float(v), 4) for v in values]}


def _federated_job(name: str, kwargs: dict, training: dict, seed: int, split: str = "test", split_seed: int = 0) -> dict:
    return {
        "kind": "federated",
        "strategy": name,
        "strategy_kwargs": kwargs,
        "training": training,
        "seed": seed,
        "split": split,
        "split_seed": split_seed,
    }


def _settings_record(name: str, kwargs: dict, training: dict) -> dict[str, Any]:
    full_training = {"local_steps": LOCAL_STEPS, "batch_size": BATCH_SIZE, "optimizer": "sgd", **training}
    return {"strategy": name, "strategy_kwargs": kwargs, "client_training": full_training, "rounds": ROUNDS}


def _method_entry(runs: list[dict[str, Any]], local_by_seed: dict[str, list[float]] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "mean_center_test_accuracy": _spread([r["mean_center_accuracy"] for r in runs]),
        "pooled_test_accuracy": _spread([r["pooled_test_accuracy"] for r in runs]),
        "all_test_rows_accuracy": _spread([r["all_test_rows_accuracy"] for r in runs]),
        "center_test_accuracy": {c: _spread([r["center_accuracy"][c] for r in runs]) for c in runs[0]["center_accuracy"]},
    }
    if local_by_seed is not None:
        entry["gain_over_local_only"] = {
            c: _spread([r["center_accuracy"][c] - local for r, local in zip(runs, local_by_seed[c])]) for c in local_by_seed
        }
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default: up to 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="evaluation seeds (default 42-46)")
    parser.add_argument("--no-tuning", action="store_true", help="only the FLamby-setting runs")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help=f"output JSON (default {RESULTS_PATH})")
    parser.add_argument("--personalized-only", action="store_true",
                        help="recompute only the `personalized` block, reusing the tuned settings and pooled runs in --out")
    parser.add_argument("--methods", type=_method_list, default=None, metavar="A,B",
                        help="with --personalized-only: recompute only these methods of the `personalized` block "
                        "(e.g. fenda,ditto_mlp_grid) and merge them into --out, keeping the other entries")
    parser.add_argument("--cache", type=Path, default=None, metavar="FILE",
                        help="append each finished job's result to FILE and reuse the results already there (resume)")
    args = parser.parse_args(argv)
    global JOB_CACHE
    JOB_CACHE = args.cache
    started = time.perf_counter()
    seeds = list(args.seeds)
    if args.personalized_only:
        return _personalized_only(args.out, seeds, args.workers, started, args.methods)
    if args.methods is not None:
        parser.error("--methods needs --personalized-only")
    centers = [s.name for s in _sites()]

    # 1. baselines and FLamby-setting strategies on the test parts
    jobs: list[dict[str, Any]] = []
    for seed in seeds:
        jobs.append({"kind": "pooled", "seed": seed, "split": "test"})
        jobs += [{"kind": "local", "center": c, "seed": seed, "split": "test"} for c in centers]
        jobs += [_federated_job(name, kw, tr, seed) for name, (kw, tr) in FLAMBY_SETTINGS.items()]
    # 2. tuning on validation parts carved from the training parts
    grid = tuning_grid() if not args.no_tuning else {}
    tuning_jobs = [
        _federated_job(name, kw, tr, train_seed, split="validation", split_seed=split_seed)
        for name, configs in grid.items()
        for kw, tr in configs
        for split_seed in TUNING_SPLIT_SEEDS
        for train_seed in TUNING_TRAIN_SEEDS
    ]
    outputs = run_jobs(jobs + tuning_jobs, args.workers, "baselines, FLamby settings, tuning")
    done = dict(zip(map(_job_key, jobs + tuning_jobs), outputs))

    # choose each strategy's settings on validation only
    tuning_report: dict[str, Any] = {}
    chosen: dict[str, tuple[dict, dict]] = {}
    for name, configs in grid.items():
        rows = []
        for kw, tr in configs:
            runs = [
                done[_job_key(_federated_job(name, kw, tr, ts, "validation", ss))]
                for ss in TUNING_SPLIT_SEEDS
                for ts in TUNING_TRAIN_SEEDS
            ]
            rows.append(
                {
                    "strategy_kwargs": kw,
                    "client_training": tr,
                    "validation_mean_center_accuracy": round(float(np.mean([r["mean_center_accuracy"] for r in runs])), 4),
                    "validation_mean_center_loss": round(float(np.mean([r["mean_center_loss"] for r in runs])), 4),
                }
            )
        # best validation accuracy, then lower validation loss; grid order breaks exact ties
        best = min(range(len(rows)), key=lambda i: (-rows[i]["validation_mean_center_accuracy"], rows[i]["validation_mean_center_loss"], i))
        chosen[name] = configs[best]
        tuning_report[name] = {"chosen": rows[best], "grid": rows}

    # 3. tuned settings retrained on the full training parts, tested once
    tuned_jobs = [_federated_job(name, kw, tr, seed) for name, (kw, tr) in chosen.items() for seed in seeds]
    if tuned_jobs:
        done.update(zip(map(_job_key, tuned_jobs), run_jobs(tuned_jobs, args.workers, "tuned settings on test")))

    # assemble
    pooled_runs = [done[_job_key({"kind": "pooled", "seed": s, "split": "test"})] for s in seeds]
    local_runs = {c: [done[_job_key({"kind": "local", "center": c, "seed": s, "split": "test"})] for s in seeds] for c in centers}
    local_own = {c: [r["center_accuracy"][c] for r in local_runs[c]] for c in centers}
    n_test = sum(s.n_test for s in _sites())
    report: dict[str, Any] = {
        "benchmark": "Fed-Heart-Disease (FLamby split), logistic regression",
        "command": ".venv/bin/python -m bench.heart",
        "seeds": seeds,
        "protocol": {
            "data": "4 centers (0 cleveland, 1 hungarian, 2 switzerland, 3 va), 303/261/46/130 rows after FLamby's "
            "preprocessing; FLamby's per-center 66% train split (random_state 43, stratified except switzerland); "
            "features standardized with each center's training mean/std",
            "train_test_sizes": {s.name: [s.n_train, s.n_test] for s in _sites()},
            "model": "Linear(13, 1) + sigmoid, binary cross-entropy",
            "pooled_and_local_training": f"Adam lr {CENTRALIZED_LR}, batch {BATCH_SIZE}, {CENTRALIZED_EPOCHS} epochs "
            "(pooled: features standardized with the pooled training statistics, as FLamby)",
            "federated_training": f"{ROUNDS} rounds, every center every round, batch {BATCH_SIZE}, SGD; updates are weight deltas",
            "mean_center_test_accuracy": "accuracy (threshold 0.5) on each center's test part, averaged over the 4 centers",
            "pooled_test_accuracy": f"accuracy on all {n_test} test rows scaled with the pooled training statistics "
            "(FLamby's pooled test set). Federated and local models were trained on features scaled per center, so "
            "this figure handicaps them; all_test_rows_accuracy is the like-for-like figure",
            "all_test_rows_accuracy": f"accuracy on all {n_test} test rows, each scaled with its own center's training statistics",
            "spread": "mean and population standard deviation (ddof=0) over the seeds, plus the per-seed values in seed order",
            "flamby_settings": "fedavg..fedadagrad: FLamby's config_heart_disease.json (client lr, server lr, mu, beta1 0.9, "
            "beta2 0.999, tau 1e-8); median, trimmed_mean, krum, multikrum are not in FLamby and reuse FedAvg's settings. "
            "With 4 centers, trimmed_mean (trim 0.25 = one value per side) equals the coordinate-wise median",
            "gain_over_local_only": "per center and seed: the method's accuracy on that center's test part minus the "
            "accuracy of the model trained on that center alone",
            "tuning": f"settings chosen by mean-over-centers accuracy (then loss) on validation parts: "
            f"{int(VALIDATION_FRACTION * 100)}% of each center's TRAINING part, carved with split seeds {list(TUNING_SPLIT_SEEDS)} "
            f"(stratified like FLamby), training seeds {list(TUNING_TRAIN_SEEDS)}, normalization refitted on the rest; "
            "the test parts are used only for the final figures",
        },
        "flamby_published": FLAMBY_PUBLISHED,
        "pooled": _method_entry(pooled_runs, None),
        "local_only": {
            c: {
                "own_center_test_accuracy": _spread(local_own[c]),
                **_method_entry(local_runs[c], None),
            }
            for c in centers
        },
        "flamby_settings": {},
        "tuned": {},
        "tuning": tuning_report,
    }
    for name, (kw, tr) in FLAMBY_SETTINGS.items():
        runs = [done[_job_key(_federated_job(name, kw, tr, s))] for s in seeds]
        report["flamby_settings"][name] = {"settings": _settings_record(name, kw, tr), **_method_entry(runs, local_own)}
    for name, (kw, tr) in chosen.items():
        runs = [done[_job_key(_federated_job(name, kw, tr, s))] for s in seeds]
        report["tuned"][name] = {
            "settings": _settings_record(name, kw, tr),
            "chosen_on": "validation parts of the training data (see protocol.tuning)",
            "validation_mean_center_accuracy": tuning_report[name]["chosen"]["validation_mean_center_accuracy"],
            **_method_entry(runs, local_own),
        }
    report["personalized"] = personalized_section(report, chosen, seeds, args.workers)
    report["summary"] = _summary_block(report)
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    report["environment"] = {"python": platform.python_version(), "torch": _torch_version(), "workers": args.workers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(report))
    print("\n" + personalized_table(report["personalized"]))
    print(f"\nwrote {args.out} in {report['elapsed_seconds']} s")
    return 0


def _summary_block(report: dict[str, Any]) -> dict[str, Any]:
    def mean(entry: dict, key: str = "mean_center_test_accuracy") -> float:
        return entry[key]["mean"]

    summary: dict[str, Any] = {
        "fedavg_flamby_settings": mean(report["flamby_settings"]["fedavg"]),
        "best_flamby_settings_on_test": max(report["flamby_settings"], key=lambda n: mean(report["flamby_settings"][n])),
        "pooled": mean(report["pooled"]),
        "flamby_published_best_federated": 0.731,
        "flamby_published_pooled": 0.735,
    }
    if report["tuned"]:
        by_validation = max(report["tuned"], key=lambda n: report["tuned"][n]["validation_mean_center_accuracy"])
        summary["tuned_strategy_selected_on_validation"] = by_validation
        summary["tuned_selected_on_validation_test_accuracy"] = mean(report["tuned"][by_validation])
        summary["best_tuned_on_test"] = max(report["tuned"], key=lambda n: mean(report["tuned"][n]))
    return summary


def markdown_table(report: dict[str, Any]) -> str:
    def cell(entry: dict, key: str) -> str:
        return f"{entry[key]['mean']:.3f} ± {entry[key]['std']:.3f}"

    published = report["flamby_published"]
    lines = [
        "| method | settings | mean over centers (test) | pooled test | all test rows, own scaling | FLamby published |",
        "|---|---|---|---|---|---|",
    ]
    pub = published["pooled"]
    lines.append(
        f"| pooled training | FLamby | {cell(report['pooled'], 'mean_center_test_accuracy')} | "
        f"{cell(report['pooled'], 'pooled_test_accuracy')} | {cell(report['pooled'], 'all_test_rows_accuracy')} | "
        f"{pub['mean_center_test_accuracy']:.3f} ({pub['pooled_test_accuracy']:.3f}) |"
    )
    for c, entry in report["local_only"].items():
        pub_local = published["local_mean_center_test_accuracy"].get(c)
        lines.append(
            f"| local only: {c} (own test {entry['own_center_test_accuracy']['mean']:.3f}) | FLamby | "
            f"{cell(entry, 'mean_center_test_accuracy')} | {cell(entry, 'pooled_test_accuracy')} | "
            f"{cell(entry, 'all_test_rows_accuracy')} | {'' if pub_local is None else f'{pub_local:.3f}'} |"
        )
    for group, label in (("flamby_settings", "FLamby"), ("tuned", "tuned on validation")):
        for name, entry in report[group].items():
            pub_s = published.get(name)
            pub_text = f"{pub_s['mean_center_test_accuracy']:.3f} ({pub_s['pooled_test_accuracy']:.3f})" if pub_s else "n/a"
            settings = entry["settings"]
            detail = ", ".join(
                [f"lr {settings['client_training']['lr']:g}", f"{settings['client_training']['local_steps']} steps"]
                + [f"{k} {v:g}" for k, v in settings["strategy_kwargs"].items() if k in ("server_lr", "mu")]
            )
            lines.append(
                f"| {name} | {label}: {detail} | {cell(entry, 'mean_center_test_accuracy')} | "
                f"{cell(entry, 'pooled_test_accuracy')} | {cell(entry, 'all_test_rows_accuracy')} | "
                f"{pub_text if group == 'flamby_settings' else ''} |"
            )
    centers = list(report["local_only"])
    lines += ["", "Federated minus local-only accuracy on each center's own test part (mean over seeds):", ""]
    lines.append("| method | " + " | ".join(centers) + " |")
    lines.append("|---|" + "---|" * len(centers))
    for group, label in (("flamby_settings", "FLamby"), ("tuned", "tuned")):
        for name, entry in report[group].items():
            gains = " | ".join(f"{entry['gain_over_local_only'][c]['mean']:+.3f}" for c in centers)
            lines.append(f"| {name} ({label}) | {gains} |")
    return "\n".join(lines)


def _job_key(job: dict[str, Any]) -> str:
    return json.dumps(job, sort_keys=True)


def _torch_version() -> str:
    import torch

    return torch.__version__



# ---------------------------------------------------------------------------------------------
# Personalized models (issue 10): each center's own model against its own tuned local-only model
#
# For every evaluation seed, each federation runs once on the full training parts; every candidate
# personalization (fine-tuning steps and learning rates, Ditto's lambda) and every local-only
# candidate (node.personalize.LOCAL_ONLY_CANDIDATES) is then scored on the test parts. Which
# candidate a center gets is decided on validation only: the same runs on the validation carvings
# of the tuning protocol (federations retrained on the carved training rows), mean accuracy over
# the carvings and training seeds, chosen per center (each hospital picks for itself). The code
# that trains the candidates is the node's own (node/personalize.py).

# Federations personalized: the logistic regression with FedAvg's tuned settings (bench tuning,
# tuned.fedavg), and fedsets.heart.PERSONAL_MLP. Every tuned strategy also
# gets fine-tuning.


def _personal_spec(federation: dict[str, Any]):
    from dataclasses import replace

    spec = _spec(federation["training"])
    return replace(spec, model=federation.get("model", "logreg"), model_params=federation.get("model_params", {}))


def run_personal_job(job: dict[str, Any]) -> dict[str, dict[str, float]]:
    """One federation (or the local-only grid) on one split and seed: ``{center: {candidate: test accuracy}}``."""
    from dataclasses import replace

    from aggregator.rules import resolve_rules
    from fedcore import metrics as fm
    from fedcore.models import predict_with_weights
    from fedcore.seeds import personalization_seed
    from fedcore.task import PersonalizationSettings
    from fedledger.simulation import run_simulation
    from node import personalize as pz

    institutions, _, _ = _split(job["split"], job.get("split_seed", 0))
    # validation carvings are named "<center>/validation": results are keyed by the center itself
    institutions = [replace(inst, name=inst.name.split("/")[0]) for inst in institutions]
    seed = job["seed"]
    out: dict[str, dict[str, float]] = {inst.name: {} for inst in institutions}
    if job["kind"] == "personal_local_nested":
        # the tuned local-only model as one candidate among personalized ones: its validation score comes from
        # choosing its settings again inside this carving's training rows (nested), as a node does
        from fedcore.task import PersonalizationSettings

        spec = replace(_spec({}), personalization=PersonalizationSettings(validation_splits=len(TUNING_SPLIT_SEEDS)))
        for inst in institutions:
            alone = pz.best_local_only(inst.X_train, inst.y_train, spec, seed=seed)
            out[inst.name][LOCAL_CANDIDATE] = fm.accuracy(inst.y_test, alone.predict(inst.X_test))
        return out
    if job["kind"] == "personal_local":
        for inst in institutions:
            for i, choice in enumerate(pz.LOCAL_ONLY_CANDIDATES):
                weights = pz.train_alone(choice, inst.X_train, inst.y_train, seed=seed)
                arch = pz.architecture(choice.model, choice.model_params, inst.X_train.shape[1])
                out[inst.name][f"local {i}"] = fm.accuracy(inst.y_test, predict_with_weights(arch, weights, inst.X_test))
            majority = pz.majority_class(inst.y_train)
            out[inst.name]["majority"] = float(np.mean(inst.y_test == majority))
        return out
    federation = job["federation"]
    spec = _personal_spec(federation)
    if federation.get("model") == "fenda":
        return run_fenda(institutions, spec.with_training(seed=seed), seed=seed)
    settings = PersonalizationSettings()
    trajectory: list[dict] = []
    result = run_simulation(
        institutions,
        spec,
        resolve_rules(strategy=federation["strategy"],
                      strategy_params={"fit_config": federation["training"], **federation["strategy_kwargs"]}),
        rounds=ROUNDS,
        seed=seed,
        keep_records=False,
        evaluate_every_round=False,
        on_round=lambda record: trajectory.append(record.global_weights),
    )
    run_spec = spec.with_training(seed=seed)
    finetune_steps = settings.finetune_steps if federation.get("finetune", True) else (0,)
    for inst in institutions:
        def accuracy(weights: dict, inst=inst) -> float:
            return fm.accuracy(inst.y_test, predict_with_weights(run_spec, weights, inst.X_test))

        for steps in finetune_steps:
            for lr in settings.finetune_lrs if steps else settings.finetune_lrs[:1]:
                tuned = pz.fine_tune(result.final_weights, inst.X_train, inst.y_train, run_spec, steps=steps, lr=lr,
                                     seed=personalization_seed(seed, "finetune"))
                out[inst.name][f"finetune steps={steps} lr={lr:g}"] = accuracy(tuned)
        if job.get("ditto"):
            for lam in settings.ditto_lambdas:
                personal = pz.ditto_personal(trajectory, inst.X_train, inst.y_train, run_spec, lam=lam, seed=seed)
                out[inst.name][f"ditto lambda={lam:g}"] = accuracy(personal)
    return out


def run_fenda(institutions, spec, *, seed: int) -> dict[str, dict[str, float]]:
    """FENDA-FL on ``spec`` (model ``fenda``): every round each center trains its whole model (the federation's
    shared extractor with its own local extractor and head) for the round's local steps, and sends only the change
    of the shared extractor; the shared extractor moves by their FedAvg (weighted by training rows).

    Two candidates per center, scored on its test rows: ``fenda final`` (the last shared extractor with the
    center's own local parts, what it holds at the end) and ``fenda last local`` (its model right after its last
    round of local training)."""
    from aggregator.strategies import fedavg
    from fedcore import metrics as fm
    from fedcore.models import build_model, predict_with_weights, shared_names
    from fedcore.seeds import initial_model_seed, personalization_seed
    from node.training import apply_update, train_local

    start = build_model(spec, seed=initial_model_seed(seed))
    shared = shared_names(start)
    initial = {k: v.detach().numpy().astype(np.float32) for k, v in start.state_dict().items()}
    models = [dict(initial) for _ in institutions]  # each center's whole model, local parts never leave it
    global_shared = {k: initial[k] for k in shared}
    for r in range(1, ROUNDS + 1):
        deltas = []
        for i, inst in enumerate(institutions):
            current = {**models[i], **global_shared}
            result = train_local(current, inst.X_train, inst.y_train, spec, seed=personalization_seed(seed, "fenda", r, i))
            models[i] = apply_update(current, result.arrays)
            deltas.append({k: result.arrays[k] for k in shared})
        step = fedavg(deltas, [len(inst.y_train) for inst in institutions])
        global_shared = apply_update(global_shared, step)
    out: dict[str, dict[str, float]] = {}
    for model, inst in zip(models, institutions):
        final = {**model, **global_shared}
        out[inst.name] = {label: fm.accuracy(inst.y_test, predict_with_weights(spec, weights, inst.X_test))
                          for label, weights in (("fenda final", final), ("fenda last local", model))}
    return out


# Methods whose federation settings are chosen on validation (issue 10's 0.81 target). Grids fixed before any
# result: hidden width, client lr and local steps per round; batch 8, SGD, FedAvg, 15 rounds. One setting serves all
# centers (they share the federation): the one with the best mean over centers of each center's validation-chosen
# candidate (first in grid order on a tie). ``ditto_mlp`` (fedsets.heart.PERSONAL_MLP_TRAINING) is one point of it.
GRID_HIDDEN = (16, 32)
GRID_LRS = (0.01, 0.03)
GRID_STEPS = (25, 100)


def personal_grids() -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {setting label: federation}}`` of the validation-chosen personalized methods."""
    def federation(model: str, hidden: int, lr: float, steps: int) -> dict[str, Any]:
        params = {"hidden_sizes": [hidden]} if model == "mlp" else {"hidden_size": hidden}
        return {"strategy": "fedavg", "strategy_kwargs": {}, "model": model, "model_params": params,
                "training": {"lr": lr, "local_steps": steps, "batch_size": 8}, "ditto": model == "mlp", "finetune": False}

    return {
        method: {f"hidden {h}, lr {lr:g}, {steps} steps": federation(model, h, lr, steps)
                 for h in GRID_HIDDEN for lr in GRID_LRS for steps in GRID_STEPS}
        for method, model in (("ditto_mlp_grid", "mlp"), ("fenda", "fenda"))
    }


GRID_PREFIX = {"ditto_mlp_grid": "ditto", "fenda": "fenda"}

# Per-hospital selection (issue 10): each center chooses on its own validation between its tuned local-only model
# (one candidate, scored by nested tuning: job kind personal_local_nested) and the Ditto candidates of a method;
# a tie keeps the local-only model. Method -> the Ditto method whose federation and candidates it uses.
LOCAL_CANDIDATE = "local-only (tuned)"
OR_LOCAL = {"ditto_mlp_or_local": "ditto_mlp", "ditto_mlp_grid_or_local": "ditto_mlp_grid"}


def _personal_jobs(federations: dict[str, dict[str, Any]], seeds: list[int], local: bool = True,
                   nested: bool = False) -> list[dict[str, Any]]:
    validation = [("validation", ss, ts) for ss in TUNING_SPLIT_SEEDS for ts in TUNING_TRAIN_SEEDS]
    splits = validation + [("test", 0, s) for s in seeds]
    jobs = [{"kind": "personal_local", "split": sp, "split_seed": ss, "seed": s} for sp, ss, s in splits] if local else []
    if nested:
        jobs += [{"kind": "personal_local_nested", "split": sp, "split_seed": ss, "seed": s} for sp, ss, s in validation]
    for name, federation in federations.items():
        jobs += [{"kind": "personal", "name": name, "federation": federation, "ditto": federation.get("ditto", False),
                  "split": sp, "split_seed": ss, "seed": s} for sp, ss, s in splits]
    return jobs


def _choose_per_center(validation_runs: list[dict], test_runs: list[dict], prefix: str | tuple[str, ...]
                       ) -> dict[str, dict[str, Any]]:
    """Per center: the candidate (labels starting with ``prefix``) with the best mean validation accuracy
    (first in candidate order on a tie), and its test accuracy per seed."""
    chosen: dict[str, dict[str, Any]] = {}
    for center, candidates in validation_runs[0].items():
        labels = [label for label in candidates if label.startswith(prefix)]
        scores = [float(np.mean([run[center][label] for run in validation_runs])) for label in labels]
        best = labels[int(np.argmax(scores))]
        chosen[center] = {"candidate": best, "validation_accuracy": round(max(scores), 4),
                          "test_per_seed": [run[center][best] for run in test_runs]}
    return chosen


def _personal_entry(chosen: dict[str, dict[str, Any]], local: dict[str, float] | None) -> dict[str, Any]:
    """One method's entry; ``local`` is each center's tuned local-only test accuracy (mean over the same seeds)."""
    per_seed = {c: np.asarray(v["test_per_seed"], dtype=np.float64) for c, v in chosen.items()}
    entry: dict[str, Any] = {
        "mean_over_centers": round(float(np.mean([v.mean() for v in per_seed.values()])), 4),
        "per_center": {c: round(float(v.mean()), 4) for c, v in per_seed.items()},
        "per_center_std": {c: round(float(v.std()), 4) for c, v in per_seed.items()},
    }
    if local is not None:  # the mean of the per-seed differences is the difference of the means
        entry["gain_over_local"] = {c: round(float(v.mean() - local[c]), 4) for c, v in per_seed.items()}
    entry["mean_over_centers_per_seed"] = [round(float(x), 4) for x in np.mean(list(per_seed.values()), axis=0)]
    entry["chosen_per_center"] = {c: {"candidate": v["candidate"], "validation_accuracy": v["validation_accuracy"]} for c, v in chosen.items()}
    return entry


def _grid_entry(settings: dict[str, tuple[list[dict], list[dict]]], prefix: str | tuple[str, ...], local: dict[str, float]
                ) -> dict[str, Any]:
    """A validation-chosen method: the setting whose per-center choices score best on validation (mean over
    centers), its entry, and every setting's validation and test means (``grid``, for the record only)."""
    rows = {}
    for label, (val, test) in settings.items():
        chosen = _choose_per_center(val, test, prefix)
        rows[label] = (float(np.mean([v["validation_accuracy"] for v in chosen.values()])), chosen)
    best = max(rows, key=lambda label: rows[label][0])  # first in grid order on a tie
    entry = _personal_entry(rows[best][1], local)
    entry["chosen_setting"] = best
    entry["grid"] = {label: {"validation_mean_over_centers": round(score, 4),
                             "test_mean_over_centers": _personal_entry(chosen, None)["mean_over_centers"]}
                     for label, (score, chosen) in rows.items()}
    return entry


def _local_candidate_runs(nested_validation: list[dict], chosen_local: dict[str, dict[str, Any]]):
    """``(validation runs, test runs) -> the same runs with the tuned local-only model first among each center's
    candidates``: on validation its nested score, on test the baseline's own figure for that seed."""
    def add(validation: list[dict], test: list[dict]) -> tuple[list[dict], list[dict]]:
        val = [{c: {LOCAL_CANDIDATE: own[c][LOCAL_CANDIDATE], **run[c]} for c in run} for run, own in zip(validation, nested_validation)]
        tst = [{c: {LOCAL_CANDIDATE: chosen_local[c]["test_per_seed"][i], **run[c]} for c in run} for i, run in enumerate(test)]
        return val, tst
    return add


def personal_methods(chosen_strategies: dict[str, tuple[dict, dict]]) -> dict[str, list[str]]:
    """Every method of the ``personalized`` block and the federations (or grids) it needs."""
    methods: dict[str, list[str]] = {"local_only": [], "majority_class": []}
    for name in [*chosen_strategies, "fedavg_mlp"]:
        methods[name] = methods[f"{name}+finetune"] = [name]
        if name == "fedavg":
            methods["ditto_logreg"] = [name]
        if name == "fedavg_mlp":
            methods["ditto_mlp"] = [name]
    for method in personal_grids():
        methods[method] = [method]
    for method, ditto in OR_LOCAL.items():
        methods[method] = methods[ditto]
    methods["pooled"] = []
    return methods


def personalized_section(report: dict[str, Any], chosen_strategies: dict[str, tuple[dict, dict]], seeds: list[int],
                         workers: int, only: list[str] | None = None) -> dict[str, Any]:
    """The ``personalized`` block of heart.json: one entry per method (see bench/README.md).

    ``only`` names the methods to compute (default: all); the others are kept from ``report["personalized"]``, and
    so is the local-only baseline their gains are measured against unless ``local_only`` is named.
    """
    catalogue = personal_methods(chosen_strategies)
    wanted = list(catalogue) if only is None else only
    unknown = [m for m in wanted if m not in catalogue]
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(catalogue)}")
    federations: dict[str, dict[str, Any]] = {
        f"{name}": {"strategy": name, "strategy_kwargs": kw, "training": {"local_steps": LOCAL_STEPS, "batch_size": BATCH_SIZE, **tr},
                    "ditto": name == "fedavg"}
        for name, (kw, tr) in chosen_strategies.items()
    }
    federations["fedavg_mlp"] = {"strategy": "fedavg", "strategy_kwargs": {}, "training": PERSONAL_MLP_TRAINING, "ditto": True,
                                 **PERSONAL_MLP}
    grids = personal_grids()
    for method, grid in grids.items():
        federations.update({f"{method}: {label}": federation for label, federation in grid.items()})
    needed = {f for m in wanted for f in catalogue[m]}
    run_federations = {name: f for name, f in federations.items() if name in needed or name.split(":")[0] in needed}
    previous = report.get("personalized") or {}
    nested = any(m in OR_LOCAL for m in wanted)
    # a per-hospital selection's test figures are its chosen candidates', the local-only one's included
    run_local = "local_only" in wanted or "majority_class" in wanted or "local_only" not in previous or nested
    jobs = _personal_jobs(run_federations, seeds, local=run_local, nested=nested)
    done = dict(zip(map(_job_key, jobs), run_jobs(jobs, workers, "personalized")))
    n_val = len(TUNING_SPLIT_SEEDS) * len(TUNING_TRAIN_SEEDS)

    def runs(kind: str, name: str | None = None) -> tuple[list[dict], list[dict]]:
        selected = [done[_job_key(j)] for j in jobs if j["kind"] == kind and j.get("name") == name]
        return selected[:n_val], selected[n_val:]

    methods: dict[str, Any] = {}
    if run_local:
        local_val, local_test = runs("personal_local")
        chosen_local = _choose_per_center(local_val, local_test, "local ")
        local = {c: float(np.mean(v["test_per_seed"])) for c, v in chosen_local.items()}
        methods["local_only"] = _personal_entry(chosen_local, local)
        methods["majority_class"] = _personal_entry(_choose_per_center(local_val, local_test, "majority"), local)
    else:
        local = dict(previous["local_only"]["per_center"])
    for name, federation in federations.items():
        if name not in run_federations or ":" in name:
            continue
        val, test = runs("personal", name)
        methods[name] = _personal_entry(_choose_per_center(val, test, "finetune steps=0 "), local)
        methods[f"{name}+finetune"] = _personal_entry(_choose_per_center(val, test, "finetune"), local)
        if federation["ditto"]:
            methods[f"ditto_{federation.get('model', 'logreg')}"] = _personal_entry(_choose_per_center(val, test, "ditto"), local)
    for method, grid in grids.items():
        if method in needed:
            methods[method] = _grid_entry({label: runs("personal", f"{method}: {label}") for label in grid},
                                          GRID_PREFIX[method], local)
    if nested:
        with_local = _local_candidate_runs(runs("personal_local_nested")[0], chosen_local)
        if "ditto_mlp_or_local" in wanted:
            methods["ditto_mlp_or_local"] = _personal_entry(
                _choose_per_center(*with_local(*runs("personal", "fedavg_mlp")), (LOCAL_CANDIDATE, "ditto")), local)
        if "ditto_mlp_grid_or_local" in wanted:
            methods["ditto_mlp_grid_or_local"] = _grid_entry(
                {label: with_local(*runs("personal", f"ditto_mlp_grid: {label}")) for label in grids["ditto_mlp_grid"]},
                (LOCAL_CANDIDATE, "ditto"), local)
    pooled = report["pooled"]["center_test_accuracy"]
    methods["pooled"] = _personal_entry(
        {c: {"candidate": "pooled training (FLamby settings)", "validation_accuracy": None, "test_per_seed": pooled[c]["per_seed"]}
         for c in pooled},
        local,
    )
    # the methods asked for, in catalogue order, merged into the block already there
    merged = {**previous, **{m: methods[m] for m in wanted}}
    return {m: merged[m] for m in catalogue if m in merged}


def _personalized_only(out: Path, seeds: list[int], workers: int, started: float, only: list[str] | None) -> int:
    report = json.loads(out.read_text())
    if report["seeds"] != seeds:
        raise SystemExit(f"{out} was measured with seeds {report['seeds']}, not {seeds}")
    chosen = {name: (entry["settings"]["strategy_kwargs"], {k: entry["settings"]["client_training"][k] for k in ("lr", "local_steps")})
              for name, entry in report["tuned"].items()}
    report["personalized"] = personalized_section(report, chosen, seeds, workers, only)
    report["personalized_elapsed_seconds"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(personalized_table(report["personalized"]))
    print(f"\nwrote the personalized block of {out} in {report['personalized_elapsed_seconds']} s")
    return 0


def _method_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one method")
    return names


def personalized_table(methods: dict[str, Any]) -> str:
    """Markdown: per-center test accuracy (mean ± std over seeds), mean over centers, gain over local-only."""
    centers = list(methods["local_only"]["per_center"])
    lines = ["| method | " + " | ".join(centers) + " | mean over centers | gain over tuned local-only |",
             "|---|" + "---|" * (len(centers) + 2)]
    for name, entry in methods.items():
        cells = " | ".join(f"{entry['per_center'][c]:.3f} ± {entry['per_center_std'][c]:.3f}" for c in centers)
        gains = " / ".join(f"{entry['gain_over_local'][c]:+.3f}" for c in centers)
        lines.append(f"| {name} | {cells} | {entry['mean_over_centers']:.3f} | {gains} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
