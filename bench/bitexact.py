"""Is a round's outcome bit-identical wherever a scorer computes it? What a committee agrees on depends on it.

Records the inputs of a real Fed-Heart-Disease federation (``fedledger data heart`` files, the four hospitals
training locally with the task's settings, FedAvg, GTG-Shapley scoring with the default rules: every round goes
through :func:`aggregator.rounds.compute_round`), then recomputes every recorded round under other conditions, each
in its own process, and compares the outcome a scorer signs: the new model's sha256 (of its canonical float32
safetensors bytes) and the fixed-point scores (18 decimals).

Conditions (``CONDITIONS``): torch with 1 or 2 intra-op threads, ``OMP_NUM_THREADS`` 1 or 2, a separate process;
the validation forward pass computed by NumPy in float32 instead of torch (another library's summation order: the
closest this machine comes to another CPU or BLAS); and in float64 (a deliberately larger difference, as an upper
bound). Scores are measured on all 18 decimals (the rules' own rounding to ``fedcore.rules.SCORE_DECIMALS`` is
turned off in the workers); for every condition that differs from the reference, the report says by how much, which
rounding of the scores (decimals kept) makes them agree, and what that rounding changes (largest change of a score,
of a payout share, and whether any score's sign changes).

``--model mlp`` records the demo's MLP federation instead, whose rules turn the server step search on
(``fedsets.heart.HEART_STEP_SEARCH``): every coalition's model is the best of 29 points along its aggregate, so a
near-tie between two points could send another machine to another step and another model hash. The MLP report adds
the ``*_exact`` conditions, the same recomputations with the search comparing raw values (``tolerance`` 0) instead of
values quantized to the rules' tolerance, and counts the coalitions whose chosen step differs from the reference's
(``step_choices``); ``tolerance_effect`` says what the quantization itself changes (scores, model hashes, and each
round's model's accuracy on the pooled test parts).

``python -m bench.bitexact [--model logreg|mlp] [--rounds 5] [--seed 42] [--out FILE]`` (default out
``bench/results/bitexact.json``, ``bitexact_mlp.json`` for the MLP); keys in bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle  # noqa: S403 - the recorded inputs are written and read by this benchmark only, in its own temp dir
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = {"logreg": Path("bench/results/bitexact.json"), "mlp": Path("bench/results/bitexact_mlp.json")}
#: name -> (torch threads, OMP_NUM_THREADS, forward pass, step-search tolerance: None keeps the rules')
CONDITIONS = {
    "reference": (1, "1", "torch", None),
    "torch_threads_2": (2, "1", "torch", None),
    "omp_threads_2": (1, "2", "torch", None),
    "torch_and_omp_threads_2": (2, "2", "torch", None),
    "numpy_float32_forward": (1, "1", "numpy32", None),
    "numpy_float64_forward": (1, "1", "numpy64", None),
}
#: Under a step search: the same recomputations comparing raw values, as the search did before rules v5.
EXACT_CONDITIONS = {
    "reference_exact": (1, "1", "torch", 0.0),
    "torch_threads_2_exact": (2, "1", "torch", 0.0),
    "numpy_float32_forward_exact": (1, "1", "numpy32", 0.0),
}
DECIMALS = (18, 15, 12, 9, 6)  # decimals of the 18-decimal fixed-point scores kept


def record(data_dir: Path, *, rounds: int, seed: int, model: str) -> list[dict[str, Any]]:
    """Run the federation in process and keep every round's inputs (what a scorer fetches and holds)."""
    import fedledger.simulation as simulation
    from aggregator.rules import resolve_rules
    from fedcore.population import load_validation_set
    from fedcore.task import TaskSpec
    from fedsets.heart import FLAMBY_SETTINGS, HEART_CENTERS, HEART_STEP_SEARCH
    from node.site import load_site

    spec = TaskSpec.load(data_dir / "task.json")
    validation = load_validation_set(data_dir / "validation.csv", spec)
    institutions = [simulation.Institution(name, site.X, site.y)
                    for name in HEART_CENTERS for site in [load_site(data_dir / f"{name}.csv", spec, name=name)]]
    rules = resolve_rules(spec=spec, strategy="fedavg", strategy_params=FLAMBY_SETTINGS["fedavg"][0], seed=seed,
                          step_search=HEART_STEP_SEARCH[model])
    from fedledger.datasets import TEST_DIR

    tests = [load_site(data_dir / TEST_DIR / f"{name}.csv", spec, name=name) for name in HEART_CENTERS]
    pooled_test = (np.concatenate([t.X for t in tests]), np.concatenate([t.y for t in tests]))
    recorded: list[dict[str, Any]] = []
    real = simulation.compute_round

    def keep(inputs, rules_, spec_, **kwargs):
        recorded.append({"inputs": inputs, "rules": rules_, "spec": spec_, "test": pooled_test})
        return real(inputs, rules_, spec_, **kwargs)

    simulation.compute_round = keep
    try:
        simulation.run_simulation(institutions, spec, rules, rounds=rounds, seed=seed,
                                  validation=(validation.X, validation.y), validation_groups=validation.groups,
                                  evaluate_every_round=False)
    finally:
        simulation.compute_round = real
    return recorded


def _numpy_forward(dtype):
    """``fedcore.models.predict_logits`` for the linear model and the MLP (Linear and ReLU layers), in NumPy at
    ``dtype``."""

    def predict_logits(model, X):
        params = {k: v.detach().numpy().astype(dtype) for k, v in model.state_dict().items()}
        if set(params) == {"linear.weight", "linear.bias"}:
            layers = [(params["linear.weight"], params["linear.bias"])]
        elif all(k.startswith("layers.") for k in params):
            indices = sorted({int(k.split(".")[1]) for k in params})
            layers = [(params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]) for i in indices]
        else:
            raise SystemExit(f"the NumPy forward covers the linear model and the MLP only, not {sorted(params)}")
        h = np.asarray(X, dtype=dtype)
        for depth, (weight, bias) in enumerate(layers):
            h = h @ weight.T + bias
            if depth < len(layers) - 1:
                h = np.maximum(h, dtype(0))
        return h.reshape(-1).astype(np.float64)

    return predict_logits


def worker(path: Path, threads: int, forward: str, tolerance: float | None) -> dict[str, Any]:
    """Recompute every recorded round under one condition (run in its own process)."""
    from dataclasses import replace

    import torch

    import aggregator.scoring as scoring
    import fedcore.models as models
    from aggregator.rounds import compute_round
    from fedledger.simulation import evaluate_weights

    torch.set_num_threads(threads)
    scoring.SCORE_QUANTUM = 1  # measure on the full 18 decimals; the quantization is applied in the comparison
    if forward != "torch":
        models.predict_logits = _numpy_forward(np.float32 if forward == "numpy32" else np.float64)
    choices: list[list[float]] = []
    search = scoring.search_step

    def recording_search(*args, **kwargs):
        choice = search(*args, **kwargs)
        choices.append([choice.length, choice.margin])
        return choice

    scoring.search_step = recording_search
    with open(path, "rb") as f:
        recorded = pickle.load(f)  # noqa: S301 - written by this benchmark's parent process
    out = []
    for r in recorded:
        rules = r["rules"]
        if tolerance is not None:
            rules = replace(rules, step_search={**rules.step_search, "tolerance": tolerance})
        choices.clear()
        outcome = compute_round(r["inputs"], rules, r["spec"])
        X_test, y_test = r["test"]
        out.append({"round": r["inputs"].round, "model_hash": outcome.model_hash.hex(),
                    "scores": {k: str(v) for k, v in sorted(outcome.fixed_point.items())},
                    "used": sorted(outcome.used), "step_choices": [list(c) for c in choices],
                    "test_accuracy": evaluate_weights(r["spec"], outcome.weights, X_test, y_test)["accuracy"]})
    return {"torch_threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"), "rounds": out}


def quantize(score: int, decimals: int) -> int:
    """A fixed-point score (18 decimals) rounded half away from zero to ``decimals`` decimals (still 18-decimal).
    The worker turns the rules' own rounding off, so these figures start from the full 18 decimals."""
    step = 10 ** (18 - decimals)
    q, rem = divmod(abs(score), step)
    q += 1 if 2 * rem >= step else 0
    return (q * step) * (1 if score >= 0 else -1)


def shares(scores: dict[str, int]) -> dict[str, float]:
    total = sum(s for s in scores.values() if s > 0)
    return {k: (max(s, 0) / total if total else 0.0) for k, s in scores.items()}


def compare(reference: list[dict], other: list[dict]) -> dict[str, Any]:
    """How ``other``'s outcomes differ from ``reference``'s, and which quantization makes them agree."""
    models_equal = all(a["model_hash"] == b["model_hash"] for a, b in zip(reference, other, strict=True))
    hashes_differ = sum(a["model_hash"] != b["model_hash"] for a, b in zip(reference, other, strict=True))
    diffs = [abs(int(a["scores"][k]) - int(b["scores"].get(k, "0")))
             for a, b in zip(reference, other, strict=True) for k in a["scores"]]
    scores_equal = all(a["scores"] == b["scores"] for a, b in zip(reference, other, strict=True))
    agree_at = [d for d in DECIMALS if all(
        {k: quantize(int(v), d) for k, v in a["scores"].items()} == {k: quantize(int(v), d)
                                                                      for k, v in b["scores"].items()}
        for a, b in zip(reference, other, strict=True))]
    return {"model_hash_identical": models_equal, "rounds_with_another_model_hash": hashes_differ,
            "scores_identical": scores_equal,
            "max_abs_score_difference_fixed_point": max(diffs, default=0),
            "max_abs_score_difference": max(diffs, default=0) / 1e18,
            "scores_agree_at_decimals": agree_at}


def step_choices(reference: list[dict], other: list[dict]) -> dict[str, int]:
    """How many coalitions' searches chose another step than the reference's (compared in evaluation order, round by
    round, while both evaluated the same number of coalitions)."""
    compared = differ = 0
    for a, b in zip(reference, other, strict=True):
        pairs = list(zip(a["step_choices"], b["step_choices"], strict=False))
        compared += len(pairs)
        differ += sum(x[0] != y[0] for x, y in pairs) + abs(len(a["step_choices"]) - len(b["step_choices"]))
    return {"coalitions_compared": compared, "coalitions_with_another_step": differ}


def tolerance_effect(quantized: list[dict], exact: list[dict]) -> dict[str, Any]:
    """What comparing quantized values (the rules' tolerance) changes against comparing raw ones, on one machine."""
    scores = [abs(int(a["scores"][k]) - int(b["scores"].get(k, "0"))) for a, b in zip(quantized, exact, strict=True)
              for k in a["scores"]]
    return {"max_abs_score_change": max(scores, default=0) / 1e18,
            "rounds_with_another_model_hash": sum(a["model_hash"] != b["model_hash"]
                                                  for a, b in zip(quantized, exact, strict=True)),
            "test_accuracy_quantized": [r["test_accuracy"] for r in quantized],
            "test_accuracy_exact": [r["test_accuracy"] for r in exact],
            "max_abs_test_accuracy_change": max(abs(a["test_accuracy"] - b["test_accuracy"])
                                                for a, b in zip(quantized, exact, strict=True)),
            **step_choices(quantized, exact)}


def margins(rounds: list[dict]) -> dict[str, float]:
    """The searches' margins (distance of the nearest evaluated value to a quantization boundary)."""
    values = sorted(m for r in rounds for _, m in r["step_choices"])
    if not values:
        return {}
    return {"min": values[0], "median": values[len(values) // 2], "below_1e-8": sum(m < 1e-8 for m in values)}


def quantization_effect(reference: list[dict]) -> dict[str, Any]:
    """What rounding the reference's scores to fewer decimals changes (per decimals kept)."""
    effect = {}
    for d in DECIMALS:
        score_change, share_change, sign_flips = 0, 0.0, 0
        for r in reference:
            exact = {k: int(v) for k, v in r["scores"].items()}
            rounded = {k: quantize(v, d) for k, v in exact.items()}
            score_change = max([score_change, *(abs(exact[k] - rounded[k]) for k in exact)])
            a, b = shares(exact), shares(rounded)
            share_change = max([share_change, *(abs(a[k] - b[k]) for k in a)])
            sign_flips += sum((exact[k] > 0) != (rounded[k] > 0) for k in exact)
        effect[str(d)] = {"max_abs_score_change": score_change / 1e18, "max_payout_share_change": share_change,
                          "positive_sign_changes": sign_flips}
    return effect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bitexact", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(DEFAULT_OUT), default="logreg",
                        help="the Heart task's model: FLamby's logistic regression, or the demo's MLP with the server "
                             "step search (default logreg)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="default bench/results/bitexact.json (bitexact_mlp.json for mlp)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--forward", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--tolerance", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.threads, args.forward, args.tolerance)))
        return 0
    out_path = args.out or DEFAULT_OUT[args.model]
    from fedcore.rules import SCORE_DECIMALS
    from fedledger.datasets import write_heart

    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "heart"
        write_heart(data_dir, seed=args.seed, model=args.model)
        recorded = record(data_dir, rounds=args.rounds, seed=args.seed, model=args.model)
        searched = recorded[0]["rules"].step_search is not None
        conditions = {**CONDITIONS, **(EXACT_CONDITIONS if searched else {})}
        path = Path(tmp) / "inputs.pickle"
        path.write_bytes(pickle.dumps(recorded))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        for name, (threads, omp, forward, tolerance) in conditions.items():
            env = {**os.environ, "OMP_NUM_THREADS": omp, "PYTHONPATH": os.getcwd()}
            command = [sys.executable, "-m", "bench.bitexact", "--worker", str(path), "--threads", str(threads),
                       "--forward", forward, *(["--tolerance", str(tolerance)] if tolerance is not None else [])]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"bench.bitexact: the {name} worker failed:\n{done.stderr.strip()}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: done", file=sys.stderr)
    reference = results["reference"]["rounds"]
    references = {name: results["reference_exact" if name.endswith("_exact") else "reference"]["rounds"]
                  for name in results}
    comparisons = {name: compare(references[name], r["rounds"]) for name, r in results.items()
                   if not name.startswith("reference")}
    if searched:
        for name, comparison in comparisons.items():
            comparison.update(step_choices(references[name], results[name]["rounds"]))
    report = {
        "comparisons": comparisons,
        "identical_everywhere": {name: c["model_hash_identical"] and c["scores_identical"]
                                 for name, c in comparisons.items()},
        "rules_score_decimals": SCORE_DECIMALS,
        "agree_at_rules_decimals": {name: SCORE_DECIMALS in c["scores_agree_at_decimals"]
                                    for name, c in comparisons.items()},
        "quantization_effect": quantization_effect(reference),
        "conditions": {name: {"torch_threads": t, "omp_num_threads": o, "forward": f,
                              "step_search_tolerance": "rules" if tol is None else tol}
                       for name, (t, o, f, tol) in conditions.items()},
        "model": args.model,
        "step_search": recorded[0]["rules"].step_search,
        **({"tolerance_effect": tolerance_effect(reference, results["reference_exact"]["rounds"]),
            "step_margins": margins(reference)} if searched else {}),
        "reference_outcomes": [{k: v for k, v in r.items() if k != "step_choices"} for r in reference],
        "inputs_sha256": digest,
        "setup": f"fedledger data heart --model {args.model} (seed {args.seed}), four hospitals training locally with "
                 "the task's settings, FedAvg with FLamby's settings, GTG-Shapley with the default rules"
                 f"{' and the server step search' if searched else ''}; every recorded round recomputed by "
                 "compute_round in a separate process per condition",
        "rounds": args.rounds,
        "command": "python -m bench.bitexact " + " ".join(argv if argv is not None else sys.argv[1:]),
        "elapsed_seconds": round(time.perf_counter() - started, 1),
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "processor": platform.processor()},
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps(report["identical_everywhere"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
