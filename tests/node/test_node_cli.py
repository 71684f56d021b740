"""``fedledger node ...``: real subprocesses for help and user errors (one line, exit 2), and the
commands in process against the embedded chain and the stand-in aggregator."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from fedcore.codec import update_hash_hex
from fedcore.keystore import PASSWORD_ENV, create_keystore
from fedledger.cli import main
from node import cli as node_cli
from node.remote import AggregatorClient
from tests.node.test_runner import MIN_STAKE, make_federation, serve, write_site_csv

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("fedledger")
PASSWORD = "institution password"
FAST = 2**4  # scrypt cost for test keystores only


def run(*args, env: dict | None = None, home: Path | None = None):
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "fedledger"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEDLEDGER_")}
    if home is not None:
        base["HOME"] = str(home)
    return subprocess.run(
        command + ["node", *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**base, **(env or {})}, stdin=subprocess.DEVNULL,
    )


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- subprocesses: help and user errors -------------------------------------------------------------------
def test_help_lists_every_action_and_no_password_option():
    result = run("--help")
    assert result.returncode == 0
    for action in ("init", "join", "train", "status", "claim"):
        assert action in result.stdout
    train = run("train", "--help").stdout
    for option in ("--bounty", "--data", "--aggregator", "--state-dir", "--rounds-max", "--poll-seconds",
                   "--keystore", "--password-file", "--rpc", "--deployment", "--format"):
        assert option in train
    assert "--password " not in train and "--password\n" not in train


def test_init_creates_a_private_keystore_and_refuses_to_overwrite(tmp_path):
    keystore = tmp_path / "id" / "keystore.json"
    result = run("init", "--keystore", str(keystore), "--format", "json", env={PASSWORD_ENV: PASSWORD})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["address"].startswith("0x") and report["keystore"] == str(keystore)
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert json.loads(keystore.read_text())["crypto"]["kdf"] == "scrypt"
    again = run("init", "--keystore", str(keystore), env={PASSWORD_ENV: PASSWORD})
    assert "already exists" in one_line_error(again) and "--force" in again.stderr


def test_a_password_on_the_command_line_is_refused_without_echoing_it(tmp_path):
    result = run("init", "--keystore", str(tmp_path / "k.json"), "--password", "hunter2hunter2")
    line = one_line_error(result)
    assert "never taken on the command line" in line and "hunter2" not in result.stderr + result.stdout
    assert not (tmp_path / "k.json").exists()


def test_wrong_password_is_one_line(tmp_path):
    keystore = tmp_path / "k.json"
    create_keystore(keystore, PASSWORD, scrypt_n=FAST)
    wrong = tmp_path / "pw"
    wrong.write_text("not the password\n")
    result = run("claim", "--bounty", "1", "--keystore", str(keystore), "--password-file", str(wrong))
    assert one_line_error(result) == f"error: wrong password for keystore {keystore}"


def test_no_password_source_is_one_line(tmp_path):
    keystore = tmp_path / "k.json"
    create_keystore(keystore, PASSWORD, scrypt_n=FAST)
    line = one_line_error(run("claim", "--bounty", "1", "--keystore", str(keystore)))
    assert "no keystore password" in line and "--password-file" in line


def test_missing_keystore_is_one_line(tmp_path):
    line = one_line_error(run("status", "--keystore", str(tmp_path / "none.json")))
    assert line == f"error: no keystore at {tmp_path / 'none.json'}: create one with `fedledger node init`"


# -- in process: the same rules, cheaper --------------------------------------------------------------------
def test_init_force_keeps_a_backup_and_home_is_the_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FEDLEDGER_KEYSTORE", raising=False)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(["node", "init", "--format", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["keystore"] == str(tmp_path / ".fedledger" / "keystore.json")
    assert main(["node", "init", "--force", "--format", "json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["address"] != first["address"] and Path(second["backup"]).is_file()


@pytest.mark.parametrize("form", [["--password=hunter2hunter2"], ["--password"]])
def test_every_form_of_password_argument_is_refused(tmp_path, capsys, form):
    with pytest.raises(SystemExit) as info:
        main(["node", "join", "--stake", "1ether", "--name", "H", "--keystore", str(tmp_path / "k.json"), *form])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "never taken" in err and "hunter2" not in err


def test_wrong_password_in_the_environment_and_malformed_keystore(tmp_path, monkeypatch, capsys):
    keystore = tmp_path / "k.json"
    create_keystore(keystore, PASSWORD, scrypt_n=FAST)
    monkeypatch.setenv(PASSWORD_ENV, "nope-nope")
    assert main(["node", "join", "--stake", "1ether", "--name", "H", "--keystore", str(keystore)]) == 2
    assert capsys.readouterr().err == f"error: wrong password for keystore {keystore}\n"
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert main(["node", "claim", "--bounty", "1", "--keystore", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: malformed keystore {bad}: not JSON\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["join", "--stake", "lots", "--name", "H"], "not an amount"),
        (["train", "--bounty", "0", "--data", "x.csv", "--aggregator", "http://x"], "must be at least 1"),
        (["train", "--bounty", "1", "--data", "x.csv", "--aggregator", "http://x", "--poll-seconds", "nan"],
         "positive number of seconds"),
        (["train", "--bounty", "1", "--aggregator", "http://x"], "--data"),
        (["status", "--pass", "x"], "unrecognized arguments"),  # no abbreviations of --password-file
    ],
)
def test_bad_arguments_are_refused_by_argparse(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["node", *args])
    assert info.value.code == 2 and message in capsys.readouterr().err


# -- in process, against the embedded chain and the stand-in aggregator ----------------------------------------
@pytest.fixture
def setup(tmp_path, monkeypatch):
    fed = make_federation(None, num_rounds=1)
    monkeypatch.setattr(node_cli, "_connect", lambda rpc: fed.w3)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    deployment = fed.deployment.save(tmp_path / "deployment.json")
    account = Account.from_key(b"\x07" * 32)
    keystore = tmp_path / "keystore.json"
    create_keystore(keystore, PASSWORD, private_key=account.key, scrypt_n=FAST)
    from ledger.chain import fund_account

    fund_account(fed.w3, account.address, 10**18)
    fed.insts.append(account)
    common = ["--keystore", str(keystore), "--deployment", str(deployment), "--rpc", "embedded"]
    with serve(fed.standin.app) as url:
        fed.url = url
        yield fed, account, common, tmp_path


def node(*args) -> int:
    return main(["node", *args])


def test_join_train_status_claim(setup, capsys):
    fed, account, common, tmp_path = setup
    assert node("join", "--stake", "0.01ether", "--name", "St Elsewhere", "--format", "json", *common) == 0
    joined = json.loads(capsys.readouterr().out)
    assert joined["address"] == account.address and joined["stake_wei"] == MIN_STAKE

    assert node("join", "--stake", "0.01ether", "--name", "again", *common) == 2
    assert capsys.readouterr().err.startswith(f"error: {account.address} is already registered")

    fed.open_round()
    data = write_site_csv(tmp_path / "site.csv", seed=3)
    state = tmp_path / "state"
    code = node("train", "--bounty", str(fed.bounty_id), "--data", str(data), "--aggregator", fed.url,
                "--state-dir", str(state), "--rounds-max", "1", "--no-progress", "--format", "json", *common)
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    (record,) = report["rounds"]
    saved = (state / str(fed.bounty_id) / "round-1.safetensors").read_bytes()
    assert record["status"] == "uploaded" and record["sha256"] == update_hash_hex(saved) and record["samples"] == 40
    assert fed.standin.bodies("POST") == [saved]
    assert "patient-" not in out.err + out.out

    fed.drive()  # the aggregator finalizes the last round: the bounty completes
    assert node("status", "--bounty", str(fed.bounty_id), "--format", "json", *common) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["registered"] and status["stake"] == MIN_STAKE and status["reputation"] > 0
    (bounty,) = status["bounties"]
    assert bounty["unclaimed"] == 10**17 and bounty["cumulative_score"] == 10**18 and bounty["status"] == "completed"
    assert node("status", *common) == 0
    text = capsys.readouterr().out
    assert "0.1 ETH" in text and account.address in text
    assert node("status", "--bounty", str(fed.bounty_id), "--state-dir", str(state), "--format", "json", *common) == 0
    assert json.loads(capsys.readouterr().out)["bounties"][0]["personal"] is None  # the task declares no personalization
    # What `node train` leaves at the end of a personalized bounty (tests/node/test_runner.py builds it for real):
    # `node status --state-dir` shows the institution its own gain.
    personal = {"gain": 0.0625, "accuracy_personalized": 0.8125, "accuracy_alone": 0.75, "held_out_rows": 16}
    (state / str(fed.bounty_id) / "personal.json").write_text(json.dumps(personal))
    assert node("status", "--bounty", str(fed.bounty_id), "--state-dir", str(state), "--format", "json", *common) == 0
    assert json.loads(capsys.readouterr().out)["bounties"][0]["personal"] == personal
    assert node("status", "--state-dir", str(state), *common) == 0
    assert "+0.062 (0.812 personalized vs 0.750 alone, 16 held-out rows)" in capsys.readouterr().out

    before = fed.w3.eth.get_balance(account.address)
    assert node("claim", "--bounty", str(fed.bounty_id), "--format", "json", *common) == 0
    assert json.loads(capsys.readouterr().out)["claimed"] == 10**17
    assert fed.w3.eth.get_balance(account.address) > before
    assert node("claim", "--bounty", str(fed.bounty_id), *common) == 2
    assert capsys.readouterr().err.startswith("error: nothing to claim")

    # Training again once the bounty is over does nothing and says so.
    assert node("train", "--bounty", str(fed.bounty_id), "--data", str(data), "--aggregator", fed.url,
                "--state-dir", str(state), "--no-progress", *common) == 0
    assert "completed" in capsys.readouterr().out


def test_train_errors_are_one_line(setup, capsys, monkeypatch):
    fed, account, common, tmp_path = setup
    train = ["train", "--bounty", str(fed.bounty_id), "--aggregator", fed.url, "--state-dir", str(tmp_path / "s"),
             "--no-progress", *common]
    bad = tmp_path / "bad.csv"
    bad.write_text("f0,f1,f2,label\n1,2,3,0\n1,2,private-entry,1\n")
    assert node(*train, "--data", str(bad)) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad} line 3: column 'f2' is not a number\n"  # the path as given, never the value

    wrong_columns = tmp_path / "cols.csv"
    wrong_columns.write_text("a,b,label\n1,2,0\n")
    assert node(*train, "--data", str(wrong_columns)) == 2
    assert "missing column(s) f2, f0, f1" in capsys.readouterr().err

    good = write_site_csv(tmp_path / "site.csv")
    assert node(*train, "--data", str(good)) == 2  # not joined yet
    assert "is not a registered institution" in capsys.readouterr().err

    monkeypatch.setattr("node.remote.AggregatorClient", functools.partial(AggregatorClient, retries=1, backoff=0.01))
    assert node("train", "--bounty", "1", "--data", str(good), "--aggregator", "http://127.0.0.1:9", "--no-progress",
                "--state-dir", str(tmp_path / "s"), *common) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: aggregator at http://127.0.0.1:9 unreachable") and err.count("\n") == 1


def test_status_and_claim_of_unknown_bounty(setup, capsys):
    fed, account, common, tmp_path = setup
    assert node("status", "--bounty", "99", *common) == 2
    assert capsys.readouterr().err == "error: bounty 99 does not exist (this ledger has 1)\n"
    assert node("claim", "--bounty", "99", *common) == 2
    assert "does not exist" in capsys.readouterr().err
    assert node("status", "--format", "json", *common) == 0  # not registered: still a report
    report = json.loads(capsys.readouterr().out)
    assert report["registered"] is False and report["bounties"] == []
