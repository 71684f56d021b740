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
from fedledger.demo_report import PLOTS, format_report, round_story
from fedsets.data import default_data_root
from fedsets.heart import PERSONAL_LOCAL_CANDIDATE

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
        assert inst["personalized_model"].startswith(("ditto lambda=", "local-only "))  # whichever won on validation
        assert inst["alone_model"].startswith("local-only ")
        assert inst["claimed"] == inst["credited"]  # everybody claimed
    assert saved["demo"]["task"]["personalization"]["method"] == "ditto"
    assert saved["demo"]["task"]["personalization"].get("local_candidate", False) is PERSONAL_LOCAL_CANDIDATE
    assert saved["alone"] == {i["name"]: i["accuracy_alone"] for i in saved["institutions"]}
    for key in ("funded", "credited", "refunded", "remaining"):
        assert isinstance(saved["bounty"][key], int)
    assert {"deploy", "join", "createBounty", "openRound", "commitUpdate", "finalizeRound", "claim"} <= set(saved["gas"])
    assert saved["gas"]["commitUpdate"]["count"] == 2 * 4  # every update hash committed on chain
    assert saved["gas"]["openRound"]["count"] == saved["gas"]["finalizeRound"]["count"] == 2


def test_each_round_says_what_was_committed_what_entered_the_model_and_its_gain(heart_run):
    _, report, _ = heart_run
    names = {"cleveland", "hungarian", "switzerland", "va"}
    for r in report["rounds"]:
        assert set(r["committed"]) == names  # every hospital committed on chain
        kept, left_out = set(r["kept"]), set(r["left_out"])
        assert kept <= set(r["committed"]) and not kept & left_out and set(r["committed"]) <= kept | left_out
        assert r["gain"] == pytest.approx(r["v_kept"] - r["v_empty"])
        if r["gain"] <= 0:  # pay_only_gain: a round whose model gained nothing pays nobody
            assert sum(r["credits"].values()) == 0
        for gone in ("used", "excluded", "v_grand"):
            assert gone not in r
    table = format_report(report).split("What each round's model is made of")[1]
    for r in report["rounds"]:
        assert f"{r['gain']:+.4f}" in table


def test_the_round_story_of_a_round_whose_gate_left_everything_out():
    """v_grand is the utility of the last set the scorer valued; when the gate left that out too, nothing entered the
    model and the gain is 0, whatever v_grand says."""
    story = round_story(committed=["a", "b"], used=["a", "b"], excluded={"c": "uploaded without a commitment"},
                        left_out_by_strategy={"a": "harmful: value -0.2", "b": "gated: left out of 2 rounds"},
                        v_empty=0.70, v_grand=0.55)
    assert story == {"committed": ["a", "b"], "kept": [], "gain": 0.0, "v_empty": 0.70, "v_kept": 0.70,
                     "left_out": {"a": "harmful: value -0.2", "b": "gated: left out of 2 rounds",
                                  "c": "uploaded without a commitment"}}
    partly = round_story(committed=["a", "b"], used=["a", "b"], excluded={},
                         left_out_by_strategy={"a": "harmful: value -0.2"}, v_empty=0.70, v_grand=0.75)
    assert partly["kept"] == ["b"] and partly["gain"] == pytest.approx(0.05) and partly["v_kept"] == pytest.approx(0.75)
    nothing = round_story(committed=[], used=[], excluded={}, left_out_by_strategy={}, v_empty=None, v_grand=None)
    assert (nothing["kept"], nothing["gain"], nothing["v_kept"]) == ([], 0.0, None)


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


def _site_files(tmp_path, sizes=(60, 50, 40), seed=0, text_columns=True):
    """Site CSVs with a record id and a text note besides the features a, b, c; then the sponsor's validation and
    test files (a, b, c, outcome and a region column)."""
    rng = np.random.default_rng(seed)
    files = []

    def rows(n):
        X = rng.normal(size=(n, 3))
        y = (X @ np.array([1.5, -1.0, 0.5]) + rng.normal(scale=0.5, size=n) > 0).astype(int)
        return X, y

    for k, n in enumerate(sizes):
        X, y = rows(n)
        lines = ["record_id,a,b,c,outcome,note"]
        lines += [f"r{k}-{i},{a:.5f},{b:.5f},{c:.5f},{t},text" for i, ((a, b, c), t) in enumerate(zip(X, y))]
        if not text_columns:
            lines = [",".join(line.split(",")[1:5]) for line in lines]
        path = tmp_path / f"site{k}.csv"
        path.write_text("\n".join(lines) + "\n")
        files.append(str(path))
    sponsor = []
    for name in ("validation", "test"):
        X, y = rows(40)
        lines = ["a,b,c,outcome,region"] + [f"{a:.5f},{b:.5f},{c:.5f},{t},{'north' if i % 4 else 'south'}"
                                             for i, ((a, b, c), t) in enumerate(zip(X, y))]
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        sponsor.append(str(path))
    return files, sponsor


def test_user_sites_with_the_sponsors_files_and_an_attacker(tmp_path):
    import hashlib

    files, (validation, test) = _site_files(tmp_path)
    out = tmp_path / "out"
    code = main(["demo", "--sites", *files, "--label", "outcome", "--validation", validation, "--test", test,
                 "--group", "region", "--rounds", "1", "--attacker", "site2", "--out", str(out), "--no-progress",
                 "--format", "json"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    task = report["demo"]["task"]
    assert task["feature_columns"] == ["a", "b", "c"]  # the sponsor's columns: the sites' text columns unused
    assert task["population"] == {"weighting": "pooled", "group_column": "region", "group_weights": {}}
    assert len(task["scaling"]["mean"]) == 3 and "validation rows" in task["scaling"]["source"]
    # the validation set on chain is the sponsor's file, byte for byte
    assert report["demo"]["validation_set_hash"] == "0x" + hashlib.sha256(Path(validation).read_bytes()).hexdigest()
    assert [i["name"] for i in report["institutions"]] == ["site0", "site1", "site2"]
    assert all(i["test_rows"] == 40 for i in report["institutions"])  # everyone reported on the sponsor's test set
    assert report["audit"]["verified"] is True
    attacker = next(i for i in report["institutions"] if i["role"] == "attacker")
    assert attacker["score_sum"] < 0 and attacker["credited"] == 0


def test_carve_groups_the_carved_validation_rows_by_site(tmp_path):
    from fedledger.demo import DemoOptions, read_sites

    files, _ = _site_files(tmp_path, text_columns=False)
    inputs = read_sites(DemoOptions(sites=tuple(Path(f) for f in files[:2]), label="outcome", carve=True))
    assert inputs.spec.feature_columns == ("a", "b", "c")
    assert inputs.validation_bytes is None and set(inputs.groups) == {"site0", "site1"}
    assert inputs.spec.population.group_column == "site"
    assert len(inputs.groups) == len(inputs.validation) and all(len(t) > 0 for t in inputs.test)


def _bad_site(tmp_path, edit):
    """The sponsor's files and three site files, the last one rewritten by ``edit(lines) -> lines``."""
    files, sponsor = _site_files(tmp_path)
    path = Path(files[2])
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    return files, sponsor, path


def _drop_column(lines, column):
    j = lines[0].split(",").index(column)
    return [",".join(cell for k, cell in enumerate(line.split(",")) if k != j) for line in lines]


def _set_cell(lines, row, column, value):
    j = lines[0].split(",").index(column)
    cells = lines[row].split(",")
    cells[j] = value
    return lines[:row] + [",".join(cells)] + lines[row + 1:]


@pytest.mark.parametrize("edit, message", [
    (lambda lines: _drop_column(lines, "b"), "site2.csv line 1: missing column(s) b"),
    (lambda lines: _set_cell(lines, 5, "c", "nan"), "site2.csv line 6: column 'c' is NaN or infinite"),
    (lambda lines: _set_cell(lines, 3, "a", ""), "site2.csv line 4: column 'a' is empty"),
    (lambda lines: _set_cell(lines, 7, "a", "high"), "site2.csv line 8: column 'a' is not a number"),
    (lambda lines: _set_cell(lines, 2, "outcome", "yes"), "site2.csv line 3: column 'outcome' is not a number"),
    (lambda lines: _set_cell(lines, 2, "outcome", "2"), "site2.csv line 3: label 'outcome' must be 0 or 1"),
])
def test_a_bad_site_file_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, edit, message):
    files, (validation, test), _ = _bad_site(tmp_path, edit)
    out = tmp_path / "out"
    code = main(["demo", "--sites", *files, "--label", "outcome", "--validation", validation, "--test", test,
                 "--group", "region", "--rounds", "1", "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


@pytest.mark.parametrize("which, edit, message", [
    ("validation", lambda lines: _set_cell(lines, 4, "b", "inf"), "validation.csv line 5: column 'b' is NaN or infinite"),
    ("test", lambda lines: _drop_column(lines, "c"), "test.csv line 1: missing column(s) c"),
    ("validation", lambda lines: _set_cell(lines, 9, "region", ""), "has an empty value"),
])
def test_a_bad_sponsor_file_is_one_line_exit_2_and_leaves_out_untouched(tmp_path, capsys, which, edit, message):
    files, (validation, test) = _site_files(tmp_path)
    path = Path(validation if which == "validation" else test)
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".fedledger-demo").write_text("an earlier demo\n")
    (out / "data").mkdir()
    (out / "data" / "kept.csv").write_text("earlier\n")
    code = main(["demo", "--sites", *files, "--label", "outcome", "--validation", validation, "--test", test,
                 "--group", "region", "--weighting", "equal", "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert sorted(p.name for p in out.rglob("*")) == [".fedledger-demo", "data", "kept.csv"]  # nothing changed


def test_a_sponsor_column_left_undeclared_is_a_feature_so_its_text_is_one_line(tmp_path, capsys):
    files, (validation, test) = _site_files(tmp_path)
    code = main(["demo", "--sites", *files, "--label", "outcome", "--validation", validation, "--test", test,
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "validation.csv line 2: column 'region' is not a number" in err[0]
    assert not (tmp_path / "out").exists()


def test_carve_reads_every_column_so_a_text_column_is_one_line(tmp_path, capsys):
    files, _ = _site_files(tmp_path)
    out = tmp_path / "out"
    code = main(["demo", "--sites", *files, "--label", "outcome", "--carve", "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "site0.csv line 2: column 'record_id' is not a number" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--free-rider", "nowhere"], "is not one of the institutions"),
    (["--sites", "a.csv", "b.csv"], "--sites needs --label"),
    (["--sites", "a.csv", "b.csv", "--label", "y"], "--sites needs the sponsor's --validation FILE and --test FILE"),
    (["--sites", "a.csv", "b.csv", "--label", "y", "--carve", "--test", "t.csv"], "--carve carves"),
    (["--validation", "v.csv"], "go with --sites"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--scorer", "nonsense"], "unknown contribution estimator"),
    (["--chain", "ftp://x"], "--chain"),
])
def test_bad_options_are_one_line(tmp_path, capsys, argv, message):
    code = main(["demo", "--out", str(tmp_path / "out"), "--no-progress", *argv])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and message in err


def test_model_mlp_keeps_the_benchmarks_training_settings_and_ditto(tmp_path):
    from fedledger.demo import prepare_heart
    from fedsets.heart import PERSONAL_MLP, PERSONAL_MLP_TRAINING

    data = prepare_heart(tmp_path / "data", seed=3, strategy="fedprox", task_path=tmp_path / "task.json", model="mlp")
    spec = data.spec
    assert spec.model == PERSONAL_MLP["model"]
    assert list(spec.model_params["hidden_sizes"]) == PERSONAL_MLP["model_params"]["hidden_sizes"]
    t = spec.training
    # FLamby's client learning rates are the logistic regression's: the MLP keeps its own
    assert {"lr": t.lr, "local_steps": t.local_steps, "batch_size": t.batch_size} == PERSONAL_MLP_TRAINING
    assert t.seed == 3 and spec.personalization.method == "ditto" and data.strategy_params == {"mu": 0.01}
    logreg = prepare_heart(tmp_path / "l", seed=3, strategy="fedadam", task_path=tmp_path / "l.json").spec
    assert logreg.model == "logreg" and logreg.training.lr == 0.01  # FLamby's FedAdam client lr


def test_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--rounds", "1", "--no-progress"]) == 2
    assert "holds files the demo did not write" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
