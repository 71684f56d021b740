"""``fedledger demo --model logreg --attacker hungarian`` as a real process: the label flipper is credited nothing, every honest
hospital something.

One demo process (3 rounds, seed 0, the embedded chain, its own folder): Hungarian trains on flipped labels. Every
round it is scored, its score goes on chain, its update stays out of the model (the contribution gate), it is
credited 0 and claims 0; Cleveland, Switzerland and VA are each credited more than 0; the run passes ``audit verify
--recompute`` inside the demo. A second process runs the default ``--model mlp`` with ``--free-rider cleveland`` (3 rounds, seed 0): on
the MLP, whose honest updates overshoot, the server step search (``fedsets.heart.HEART_STEP_SEARCH``) values the
zero update at 0, so it is credited nothing while every honest hospital is credited, and the audit replays the
searched steps. The logistic regression's free rider runs in process in ``tests/test_demo.py``; the figures over
seeds 0-9 and 15 rounds are ``make bench-fairness``'s (bench/results/fairness.json), not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedsets.data import default_data_root

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.skipif(
    not (default_data_root() / "fed-heart-disease").is_dir(), reason="Fed-Heart-Disease raw files not present"
)]

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
ATTACKER = "hungarian"


FREE_RIDER = "cleveland"


def _demo(out: Path, *options: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEDLEDGER_DATA": str(default_data_root()), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "fedledger.cli", "demo", "--rounds", str(ROUNDS), "--seed", "0", *options,
         "--out", str(out), "--no-progress", "--format", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=840, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return _demo(tmp_path_factory.mktemp("demo-attacker") / "out", "--model", "logreg", "--attacker", ATTACKER)


@pytest.fixture(scope="module")
def mlp_free_rider(tmp_path_factory):
    return _demo(tmp_path_factory.mktemp("demo-mlp-free-rider") / "out", "--model", "mlp", "--free-rider", FREE_RIDER)


def test_the_label_flipper_is_scored_left_out_of_the_model_and_credited_nothing(report):
    (attacker,) = [i for i in report["institutions"] if i["role"] == "attacker"]
    assert attacker["name"] == ATTACKER and attacker["credited"] == 0 and attacker["claimed"] == 0
    assert [row["round"] for row in report["rounds"]] == list(range(1, ROUNDS + 1))
    for row in report["rounds"]:
        assert row["scores"][ATTACKER] < 0 and int(row["scores_fixed"][ATTACKER]) < 0  # scored, harm on chain
        # left out of the model: harmful, and gated once it was harmful in gate_after (2) rounds in a row
        assert row["left_out"][ATTACKER].startswith("harmful: " if row["round"] <= 2 else "gated: ")
        assert row["credits"].get(ATTACKER, 0) == 0


def test_every_honest_hospital_is_credited_and_the_books_and_the_audit_hold(report):
    honest = {i["name"]: i for i in report["institutions"] if i["role"] == "honest"}
    assert set(honest) == {"cleveland", "switzerland", "va"}
    assert all(i["credited"] > 0 and i["claimed"] == i["credited"] for i in honest.values()), {
        name: i["credited"] for name, i in honest.items()}
    assert report["bounty"]["identity_holds"] is True and report["bounty"]["matches_contract"] is True
    assert report["audit"]["verified"] is True, report["audit"]["reasons"]
    assert {"left_out_round_1", f"left_out_round_{ROUNDS}", f"scores_round_{ROUNDS}"} <= {
        c["name"] for c in report["audit"]["checks"]}


def test_on_the_mlp_a_zero_update_is_credited_nothing_and_every_honest_hospital_something(mlp_free_rider):
    report = mlp_free_rider
    assert report["demo"]["task"]["model"] == "mlp"
    (rider,) = [i for i in report["institutions"] if i["role"] == "free-rider"]
    assert rider["name"] == FREE_RIDER and rider["credited"] == 0 and rider["claimed"] == 0
    for row in report["rounds"]:
        assert abs(row["scores"][FREE_RIDER]) < 1e-6 and int(row["scores_fixed"][FREE_RIDER]) == 0
    honest = {i["name"]: i["credited"] for i in report["institutions"] if i["role"] == "honest"}
    assert set(honest) == {"hungarian", "switzerland", "va"} and all(c > 0 for c in honest.values()), honest
    assert report["audit"]["verified"] is True, report["audit"]["reasons"]
