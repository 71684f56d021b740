"""``fedledger demo``: the whole story in one process on the embedded chain, short runs.

One 2-round run on Fed-Heart-Disease with a free rider (module fixture, through the CLI with ``--format json``),
one on user site CSVs with an attacker, and the one-line refusals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedledger.cli import main
from fedledger.demo_report import PLOTS, format_report
from fedsets.data import default_data_root

pytestmark = pytest.mark.skipif(
    not (default_data_root() / "fed-heart-disease").is_dir(), reason="Fed-Heart-Disease raw files not present"
)

FREE_RIDER = "cleveland"  # the largest hospital: honest, it earns a large share


@pytest.fixture(scope="module")
def heart_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["demo", "--rounds", "2", "--free-rider", FREE_RIDER, "--out", str(out), "--no-progress",
                     "--format", "json"])
    return code, json.loads(stdout.getvalue()), out


def _png_ok(path: Path) -> bool:
    import matplotlib.image

    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    image = matplotlib.image.imread(path)
    return image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and float(np.ptp(image)) > 0


def test_report_json_has_the_promised_keys(heart_run):
    code, printed, out = heart_run
    assert code == 0
    saved = json.loads((out / "report.json").read_text())
    assert saved == printed
    for key in ("rounds", "institutions", "bounty", "gas", "audit"):
        assert key in saved
    assert [r["round"] for r in saved["rounds"]] == [1, 2]
    names = {"cleveland", "hungarian", "switzerland", "va"}
    for r in saved["rounds"]:
        assert set(r["accuracy"]["centers"]) == names and 0.0 <= r["accuracy"]["mean_center"] <= 1.0
        assert set(r["scores"]) == names and all(isinstance(v, float) for v in r["scores"].values())
        assert sum(r["credits"].values()) > 0
    for inst in saved["institutions"]:
        for key in ("name", "address", "cumulative_score", "reputation", "credited", "claimed"):
            assert key in inst
        for key in ("accuracy_alone", "accuracy_federated", "accuracy_personalized"):
            assert 0.0 <= inst[key] <= 1.0, key
        assert inst["personalized_model"].startswith("ditto lambda=")
        assert inst["alone_model"].startswith("local-only ")
        assert inst["claimed"] == inst["credited"]  # everybody claimed
    assert saved["demo"]["task"]["personalization"]["method"] == "ditto"
    assert saved["alone"] == {i["name"]: i["accuracy_alone"] for i in saved["institutions"]}
    for key in ("funded", "credited", "refunded", "remaining"):
        assert isinstance(saved["bounty"][key], int)
    assert {"deploy", "join", "createBounty", "openRound", "commitUpdate", "finalizeRound", "claim"} <= set(saved["gas"])
    assert saved["gas"]["commitUpdate"]["count"] == 2 * 4  # every update hash committed on chain
    assert saved["gas"]["openRound"]["count"] == saved["gas"]["finalizeRound"]["count"] == 2


def test_audit_verifies_and_money_adds_up(heart_run):
    _, report, _ = heart_run
    assert report["audit"]["verified"] is True, report["audit"]["reasons"]
    assert report["audit"]["reasons"] == []
    names = {c["name"] for c in report["audit"]["checks"]}
    assert {"money_invariant", "updates_match_commitments", "aggregate_round_2", "scores_round_2"} <= names
    money = report["bounty"]
    assert money["funded"] == 10 * 10**18
    assert money["funded"] == money["credited"] + money["refunded"] + money["remaining"]
    assert money["credited"] == sum(i["credited"] for i in report["institutions"])
    assert money["claimed"] == sum(i["claimed"] for i in report["institutions"])


def test_contribution_and_payout_shares_tell_the_same_story(heart_run):
    _, report, _ = heart_run
    for inst in report["institutions"]:
        assert inst["contribution_share"] == pytest.approx(inst["payout_share"], abs=1e-9), inst["name"]
        assert (inst["credited"] > 0) == (inst["contribution_share"] > 0), inst["name"]


def test_free_rider_earns_about_nothing_and_the_least(heart_run):
    _, report, _ = heart_run
    by_name = {i["name"]: i for i in report["institutions"]}
    rider = by_name[FREE_RIDER]
    assert rider["role"] == "free-rider"
    assert rider["credited"] <= report["bounty"]["funded"] // 100  # about zero
    assert all(rider["credited"] <= other["credited"] for other in report["institutions"])
    assert rider["contribution_share"] == min(i["contribution_share"] for i in report["institutions"])
    assert rider["score_sum"] < max(i["score_sum"] for i in report["institutions"])
    assert rider["reputation"] == min(i["reputation"] for i in report["institutions"])


def test_plots_are_valid_pngs_and_the_table_renders(heart_run):
    _, report, out = heart_run
    assert report["plots"] == PLOTS
    for name in PLOTS.values():
        assert _png_ok(out / name), name
    text = format_report(report)
    assert "personalized" in text and "gain over alone" in text and "VERIFIED" in text and "free-rider" in text


def test_user_sites_with_an_attacker(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for k, n in enumerate((60, 50, 40)):
        X = rng.normal(size=(n, 3))
        y = (X @ np.array([1.5, -1.0, 0.5]) + rng.normal(scale=0.5, size=n) > 0).astype(int)
        lines = ["record_id,a,b,c,outcome,note"]
        lines += [f"r{k}-{i},{a:.5f},{b:.5f},{c:.5f},{t},text" for i, ((a, b, c), t) in enumerate(zip(X, y))]
        path = tmp_path / f"site{k}.csv"
        path.write_text("\n".join(lines) + "\n")
        files.append(str(path))
    out = tmp_path / "out"
    code = main(["demo", "--sites", *files, "--label", "outcome", "--rounds", "1", "--attacker", "site2",
                 "--out", str(out), "--no-progress", "--format", "json"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["demo"]["task"]["feature_columns"] == ["a", "b", "c"]  # text columns left out
    assert [i["name"] for i in report["institutions"]] == ["site0", "site1", "site2"]
    assert report["audit"]["verified"] is True
    attacker = next(i for i in report["institutions"] if i["role"] == "attacker")
    assert attacker["score_sum"] < 0 and attacker["credited"] == 0


@pytest.mark.parametrize("argv, message", [
    (["--free-rider", "nowhere"], "is not one of the institutions"),
    (["--sites", "a.csv", "b.csv"], "--sites needs --label"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--scorer", "nonsense"], "unknown contribution estimator"),
    (["--chain", "ftp://x"], "--chain"),
])
def test_bad_options_are_one_line(tmp_path, capsys, argv, message):
    code = main(["demo", "--out", str(tmp_path / "out"), "--no-progress", *argv])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and message in err


def test_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--rounds", "1", "--no-progress"]) == 2
    assert "holds files the demo did not write" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
