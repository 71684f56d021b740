"""``fedledger demo --attacker`` and ``--free-rider`` as real processes: the bad institution is credited nothing.

Two demo processes run side by side (3 rounds, seed 0, the embedded chain, each in its own folder): one with
Hungarian training on flipped labels, one with Cleveland (the largest hospital) sending zero updates. Every round the
attacker is scored, its score goes on chain, its update stays out of the model (the contribution gate), it is credited
0; the free rider is credited 0 as well; both runs pass ``audit verify --recompute`` inside the demo. The figures
over seeds 0-9 and 15 rounds are in ``make bench-fairness`` (bench/results/fairness.json), not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedsets.data import default_data_root

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (default_data_root() / "fed-heart-disease").is_dir(), reason="Fed-Heart-Disease raw files not present"
)]

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = "3"


def _start(out: Path, *role: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEDLEDGER_DATA": str(default_data_root())}
    return subprocess.Popen(
        [sys.executable, "-m", "fedledger.cli", "demo", "--rounds", ROUNDS, "--seed", "0", *role, "--out", str(out),
         "--no-progress", "--format", "json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-incentives")
    started = {"attacker": _start(root / "attacker", "--attacker", "hungarian"),
               "free-rider": _start(root / "free-rider", "--free-rider", "cleveland")}
    reports = {}
    for role, process in started.items():
        stdout, stderr = process.communicate(timeout=1800)
        assert process.returncode == 0, stderr[-2000:]
        reports[role] = json.loads(stdout)
    return reports


def _institution(report: dict, role: str) -> dict:
    (found,) = [i for i in report["institutions"] if i["role"] == role]
    return found


def test_the_label_flipper_is_scored_left_out_of_the_model_and_credited_nothing(runs):
    report = runs["attacker"]
    attacker = _institution(report, "attacker")
    assert attacker["name"] == "hungarian" and attacker["credited"] == 0 and attacker["claimed"] == 0
    for row in report["rounds"]:
        assert row["scores"]["hungarian"] < 0 and "hungarian" in row["used"]  # scored, on chain
        # left out of the model: harmful, and gated once it was harmful in gate_after (2) rounds in a row
        assert row["left_out"]["hungarian"].startswith("harmful: " if row["round"] <= 2 else "gated: ")
        assert row["credits"].get("hungarian", 0) == 0
    honest = [i for i in report["institutions"] if i["role"] == "honest"]
    assert sum(i["credited"] for i in honest) > 0
    assert report["audit"]["verified"] is True, report["audit"]["reasons"]
    assert {"left_out_round_1", f"left_out_round_{ROUNDS}"} <= {c["name"] for c in report["audit"]["checks"]}
    assert report["bounty"]["identity_holds"] is True


def test_the_free_rider_is_credited_nothing(runs):
    report = runs["free-rider"]
    rider = _institution(report, "free-rider")
    assert rider["name"] == "cleveland" and rider["credited"] == 0 and rider["claimed"] == 0
    assert all(row["scores_fixed"]["cleveland"] is not None for row in report["rounds"])  # scored every round
    assert report["audit"]["verified"] is True, report["audit"]["reasons"]
    assert report["bounty"]["identity_holds"] is True
