"""The benchmarks still run: each entry point in its smallest configuration (a merge once broke bench/round.py
silently; the figures are only re-measured by hand). No timing is asserted, only that they run and write their keys."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

BENCHES = ("gas", "round", "heart", "shapley", "dp", "fairness", "weighting", "twin_payouts", "bitexact")


@pytest.mark.parametrize("name", BENCHES)
def test_every_benchmark_imports_and_parses_its_arguments(name, capsys):
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_one_tiny_round_benchmark_writes_its_keys_beside_the_gas_figures(tmp_path):
    from bench import gas
    from bench import round as bench_round

    out = tmp_path / "gas.json"
    out.write_text(json.dumps({"join": 1}))  # bench/gas.py's figures stay
    bench_round.main(["--engines", "embedded", "--institutions", "2", "--rounds", "2", "--flower-python", "none",
                      "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["join"] == 1
    written = set(report) - {"join"}
    assert written == set(gas.ROUND_TIMING_KEYS)  # what bench/gas.py keeps when it rewrites the file
    assert report["round_seconds_plain"] > 0 and report["round_seconds"]["embedded"] > 0
    assert report["round_overhead_seconds"]["embedded"] > 0
    assert report["round_timing"]["rounds_timed"] == 1
    assert report["round_timing"]["gasless"]["round_seconds"]["embedded"] > 0  # signed commitments, one batch
    assert report["round_seconds_flower"] is None and "not asked for" in report["round_timing"]["flower"]["error"]


def test_a_round_benchmark_without_flower_keeps_the_flower_figure_of_an_earlier_run(tmp_path):
    """Flower needs its own virtualenv: a run without it keeps the last measured Flower round, marked as earlier."""
    from bench import round as bench_round

    out = tmp_path / "gas.json"
    earlier = {"per_round": [0.2, 0.3, 0.2], "flwr": "1.42.0", "backend": "ray"}
    out.write_text(json.dumps({"round_seconds_flower": 0.2, "round_timing": {"flower": earlier}}))
    bench_round.main(["--engines", "embedded", "--institutions", "2", "--rounds", "2", "--flower-python", "none",
                      "--no-gasless", "--out", str(out)])
    report = json.loads(out.read_text())
    flower = report["round_timing"]["flower"]
    assert report["round_seconds_flower"] == 0.2 and flower["per_round"] == earlier["per_round"]
    assert "earlier run" in flower["earlier_run"] and "not asked for" in flower["earlier_run"]
    assert report["round_timing"]["ratio_to_flower"]["embedded"] == round(report["round_seconds"]["embedded"] / 0.2, 2)


def test_a_missing_flower_virtualenv_is_reported_not_raised(tmp_path):
    from bench import round as bench_round

    found = bench_round.flower_rounds(None, None, [], 2, tmp_path, tmp_path / "no-such" / "python")
    assert "make bench-round" in found["error"]


def test_the_gas_benchmark_in_its_smallest_sizes_keeps_the_round_figures(tmp_path, monkeypatch):
    from bench import gas

    monkeypatch.setattr(gas, "SIZES", (1, 2))
    monkeypatch.setattr(gas, "ROUND_SIZES", (2,))
    monkeypatch.setattr(gas, "TARGETS", {k: v for k, v in gas.TARGETS.items() if not k.endswith(".10")})
    out = tmp_path / "gas.json"
    out.write_text(json.dumps({"round_seconds_plain": 0.5, "stale": 1}))
    gas.main(["--out", str(out)])
    report = json.loads(out.read_text())
    assert report["round_seconds_plain"] == 0.5 and "stale" not in report
    assert report["commit_update"] > 21_000
    assert set(report["gas_per_participant_round"]["batched"]) == {"2"}
    assert all(isinstance(v, bool) for v in report["meets_target"].values())


def test_the_flower_round_module_names_only_numpy_torch_and_our_core():
    """bench/flower_round.py runs in Flower's own virtualenv, without this project installed: it may import
    fedcore and node.training (numpy, torch, safetensors), nothing that needs web3 or fastapi."""
    source = (Path(__file__).parents[1] / "bench" / "flower_round.py").read_text()
    imported = {line.split()[1].split(".")[0] for line in source.splitlines()
                if line.strip().startswith(("import ", "from ")) and not line.strip().startswith("from __future__")}
    assert imported <= {"json", "os", "sys", "time", "functools", "pathlib", "logging", "numpy", "flwr", "fedcore",
                        "node"}


def test_twin_payouts_pays_the_same_scores_under_each_rule():
    """Two rounds: the twins split the first evenly, the second (gain within its spread) goes to twin_a alone."""
    from bench.twin_payouts import payout_gaps

    rounds = [{"posted": {"twin_a": 5, "twin_b": 5, "site": 10}, "gain": 1.0, "gain_row_std_error": 0.1},
              {"posted": {"twin_a": 3, "twin_b": 0, "site": 1}, "gain": 1e-4, "gain_row_std_error": 0.1}]
    gaps = payout_gaps(rounds)
    assert gaps["gain_beyond_1_row_std_errors"] == gaps["gain_beyond_2_row_std_errors"] == 0.0  # round 2 carried
    assert gaps["current"] > gaps["by_cumulative_value"] == pytest.approx(3 / 8)


def test_a_one_seed_twin_payouts_run_writes_its_keys(tmp_path):
    from bench import twin_payouts

    out = tmp_path / "twins.json"
    twin_payouts.main(["--seeds", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    assert set(report["max_gap"]) == {"current", "gain_beyond_1_row_std_errors", "gain_beyond_2_row_std_errors",
                                      "by_cumulative_value"}
    assert report["seeds"]["0"]["twin_rounds_left_out"] == 0 and report["seeds"]["0"]["min_gain_over_row_std_error"] > 0


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_a_one_round_fairness_run_summarizes_every_key_of_its_model(model):
    from bench import fairness

    out = fairness.run(seeds=(0,), rounds=1, model=model)
    assert out["model"] == model and out["attacker_max_payout_share"] is not None
    has_built_cases = model == "logreg"  # the built cases (twins, small_group, ...) run on the logistic regression
    assert ("twin_rounds_told_apart" in out) is has_built_cases
    assert ("twin_max_relative_gap <= 0.05" in out["targets"]) is has_built_cases


def test_the_bitexact_numpy_forward_reproduces_torch_for_the_mlp():
    """The bench's stand-in for another CPU must compute the same function, or its "differences" mean nothing."""
    import fedcore.models as models
    from bench.bitexact import _numpy_forward

    model = models.build_model("mlp", n_features=13, seed=3, hidden_sizes=(16,))
    X = np.random.default_rng(0).normal(size=(50, 13)).astype(np.float32)
    np.testing.assert_allclose(_numpy_forward(np.float64)(model, X), models.predict_logits(model, X), atol=1e-5)


def test_a_one_round_mlp_bitexact_run_counts_step_choices_under_both_comparisons(tmp_path):
    from bench import bitexact

    out = tmp_path / "bitexact_mlp.json"
    bitexact.main(["--model", "mlp", "--rounds", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["step_search"]["tolerance"] > 0
    assert {"reference_exact", "numpy_float32_forward_exact"} <= set(report["conditions"])
    effect = report["tolerance_effect"]
    assert effect["coalitions_compared"] > 0 and 0 <= effect["max_abs_score_change"] < 1e-4
    for comparison in report["comparisons"].values():  # every condition searched as many coalitions
        assert comparison["coalitions_compared"] == effect["coalitions_compared"]
    assert 0 <= report["step_margins"]["min"] < report["step_search"]["tolerance"] / 2
